"""The fastmath flag sets the CPU kernels compile with, defined once (plain sets: Numba takes no other
collection; never modify them).

- REDUCE lets a sum vectorise (reassociation) and fuse its multiply-adds; NaN and inf still propagate
  (no nnan/ninf), only the sign of a zero may differ. For sums whose order does not matter.
- CONTRACT fuses a * b + c into one multiply-add, nothing else.
- REASSOC reassociates only: x * 0 stays NaN for inf and NaN (the finiteness check relies on it).
"""
REDUCE = {"reassoc", "contract", "nsz"}
CONTRACT = {"contract"}
REASSOC = {"reassoc"}
