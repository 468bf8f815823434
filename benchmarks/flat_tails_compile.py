"""Compile cost of flat's span kernels with and without the register-block tails LeNet-5 never runs (the forward's
1x32 block, the weight gradient's 4x1 and 1x1 blocks): each variant a fresh uncached njit of the edited source,
alternating, 3 rounds, in one process (row helpers compiled first). Usage: NUMBA_CACHE_DIR=$(mktemp -d) python
benchmarks/flat_tails_compile.py"""
import inspect, textwrap, time, sys
import numpy as np
import numba
from numba import njit
from nbconv.kernels.cpu.conv import flat
from nbconv.kernels.cpu.fastmath import REDUCE

def variant(fn, replace):
    src = textwrap.dedent(inspect.getsource(fn.py_func))
    src = "\n".join(l for l in src.splitlines() if not l.startswith("@"))
    for a, b in replace:
        assert a in src, a
        src = src.replace(a, b)
    ns = dict(vars(flat))
    exec(compile(src, "<variant>", "exec"), ns)
    return njit(nogil=True, error_model="numpy", fastmath=REDUCE, no_cfunc_wrapper=True)(ns[fn.__name__])

fwd_cut = [("""                    if pair:
                        tap_sums_2x32(flat_product, d * stride + q, stride, image, q, starts, flat_filters, d * taps,
                                      taps)
                    else:
                        tap_sums_1x32(flat_product, d * stride + q, stride, image, q, starts, flat_filters, d * taps,
                                      taps)""", """                    tap_sums_2x32(flat_product, d * stride + q, stride, image, q, starts, flat_filters, d * taps,
                                      taps)""")]
bw_cut = [("""                    if four and three:
                        tap_dots_4x3(flat_sums, t, d, D, image, starts, flat_spread, stride, blocked)
                    elif four:
                        tap_dots_4x1(flat_sums, t, d, D, image, starts, flat_spread, stride, blocked)
                    elif three:
                        tap_dots_1x3(flat_sums, t, d, D, image, starts, flat_spread, stride, blocked)
                    else:
                        tap_dots_1x1(flat_sums, t, d, D, image, starts, flat_spread, stride, blocked)""",
"""                    if four:
                        tap_dots_4x3(flat_sums, t, d, D, image, starts, flat_spread, stride, blocked)
                    else:
                        tap_dots_1x3(flat_sums, t, d, D, image, starts, flat_spread, stride, blocked)""")]
f32 = numba.float32
A = lambda n: numba.types.Array(f32, n, "C")
i64 = numba.int64
fsig = (i64, i64, A(4), A(4), A(1), A(4), A(2), A(3), i64, i64, i64, i64)
bsig = (i64, i64, A(4), A(4), A(4), A(2), A(3), i64, i64, i64, i64, i64, i64)
for name, fn, cut, sig in (("forward", flat.conv2d_forward_flat_span, fwd_cut, fsig),
                           ("backward_weight", flat.conv2d_backward_weight_flat_span, bw_cut, bsig)):
    variant(fn, []).compile(sig)  # callees warm
    times = {"all blocks": [], "no tails": []}
    for r in range(3):
        for label, rep in (("all blocks", []), ("no tails", cut)):
            k = variant(fn, rep)
            t = time.process_time(); k.compile(sig); times[label].append(time.process_time() - t)
    print(name, {k: [round(x, 2) for x in v] for k, v in times.items()}, flush=True)
