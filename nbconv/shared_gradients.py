"""Gradients summed over the processes of one node in MPI-3 shared memory, without sending them through MPI.

Every process owns a slot of one shared window (MPI_Win_allocate_shared over a communicator whose processes
all share memory): the parameters' gradients side by side, in model.parameters() order. From the optimizer's
first step on, its flat gradient buffer (nbconv.flat_parameters) is moved into the slot, so the layers write
their gradients straight into shared memory. A step's sum is two barriers: after the first, every process
adds its own chunk of the values over all slots (slot 0 + slot 1 + ... in rank order, into slot 0), and
copies that chunk's sums into every other slot; after the second, every slot holds the whole sum, and each
process's optimizer steps from its own slot as from any gradient buffer. Each value is always summed in
rank order, whichever process sums it, so every process gets the same bits; for 2 processes these are the
bits of MPI_Allreduce's a + b.

A small second window carries each process's step totals (float64: loss sum, correct predictions, the
Ctrl-C flag), written before the first barrier and summed in rank order by every process after it.
"""
import numpy as np

from .flat_parameters import buffers_holding_grads

ALIGN_BYTES = 64  # chunk boundaries on cache lines: two processes never write into the same line


def chunk_bounds(count, rank, size, itemsize):
    """[start, stop) of the values process `rank` sums: `count` values cut into `size` nearly even chunks
    whose boundaries fall on multiples of ALIGN_BYTES (the last chunk ends at count)."""
    align = max(1, ALIGN_BYTES // itemsize)

    def cut(index):
        return count if index >= size else min(count, int(round(count * index / size / align)) * align)
    return cut(rank), cut(rank + 1)


class SharedSum:
    """`count` values of `dtype` and `totals` float64 values per process in shared windows over `comm` (every
    process of `comm` on one node). slots[r] is process r's gradient slot, a numpy view of shared memory."""

    def __init__(self, MPI, comm, count, dtype, totals=3):
        self.MPI, self.comm = MPI, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        dtype = np.dtype(dtype)
        align = ALIGN_BYTES // dtype.itemsize or 1
        padded = -(-max(count, 1) // align) * align
        self.windows = [MPI.Win.Allocate_shared(padded * dtype.itemsize, dtype.itemsize, comm=comm),
                        MPI.Win.Allocate_shared(ALIGN_BYTES, 8, comm=comm)]
        for window in self.windows:  # one passive epoch for the job: loads and stores, ordered by Win.Sync
            window.Lock_all(MPI.MODE_NOCHECK)
        gradients, sums = self.windows
        self.slots = [np.frombuffer(gradients.Shared_query(rank)[0], dtype, count) for rank in range(self.size)]
        self.totals = [np.frombuffer(sums.Shared_query(rank)[0], np.float64, totals) for rank in range(self.size)]
        self.bounds = chunk_bounds(count, self.rank, self.size, dtype.itemsize)

    def _meet(self):
        """A barrier with the windows' memory synchronised on both sides of it (MPI's unified memory model)."""
        for window in self.windows:
            window.Sync()
        self.comm.Barrier()
        for window in self.windows:
            window.Sync()

    def reduce(self, totals=None):
        """Every slot becomes the sum of all slots (once every process has called this). totals: this process's
        float64 totals, summed in rank order with the others' and returned (None: none, returns None)."""
        if totals is not None:
            self.totals[self.rank][...] = totals
        self._meet()
        start, stop = self.bounds
        if stop > start:
            first = self.slots[0][start:stop]
            for slot in self.slots[1:]:
                np.add(first, slot[start:stop], out=first)
            for slot in self.slots[1:]:
                slot[start:stop] = first
        summed = None
        if totals is not None:  # read before the second barrier: a process may write its next totals after it
            summed = self.totals[0].copy()
            for other in self.totals[1:]:
                summed += other
        self._meet()
        return summed


class SharedGradientReducer:
    """Sums `model`'s parameter gradients (numpy, one dtype) over `comm`, all of whose processes share memory,
    through a SharedSum. After finish, each parameter's .grad is its view of this process's slot, holding the
    sum; where the optimizer's flat gradient buffer covers the same parameters in the same order, it lives
    in the slot, and nothing is copied."""

    def __init__(self, model, MPI, comm):
        self.model = model
        self.parameters = list(model.parameters())
        dtype = self.parameters[0].value.dtype
        sizes = [int(parameter.value.size) for parameter in self.parameters]
        self.count = sum(sizes)
        self.sum = SharedSum(MPI, comm, self.count, dtype)
        self.slot = self.sum.slots[self.sum.rank]
        self.views, start = [], 0
        for parameter, size in zip(self.parameters, sizes):
            self.views.append(self.slot[start:start + size].reshape(parameter.value.shape))
            start += size

    @staticmethod
    def applies(model):
        """Whether the model's parameters are host arrays of one floating dtype (what a slot holds)."""
        parameters = model.parameters()
        return bool(parameters) and all(
            type(parameter.value) is np.ndarray and parameter.value.dtype == parameters[0].value.dtype
            for parameter in parameters) and parameters[0].value.dtype.kind == "f"

    def begin(self):
        """Before a backward pass: no gradient yet (a parameter that backward leaves without one sums as zeros)."""
        for parameter in self.parameters:
            parameter.grad = None

    def finish(self, have_gradients=True, totals=None):
        """Put this process's gradients in its slot (zeros without images or gradient), sum the slots, point
        each .grad at its view of the sum; returns the summed totals (see SharedSum.reduce)."""
        self._take_flat_buffer()
        for parameter, view in zip(self.parameters, self.views):
            grad = parameter.grad if have_gradients else None
            if grad is None:
                view[...] = 0
            elif grad is not view:
                view[...] = np.asarray(grad).reshape(view.shape)
        summed = self.sum.reduce(totals)
        for parameter, view in zip(self.parameters, self.views):
            parameter.grad = view
        return summed

    def _take_flat_buffer(self):
        """Move the optimizer's flat gradient buffer into the slot when it holds exactly these parameters in
        this order and is not there yet (from its first step on, and again after it is rebuilt)."""
        first = self.parameters[0].grad_buffer
        if first is None or first is self.views[0] or first.base is None:
            return
        flat = buffers_holding_grads(first.base)
        if flat is None or flat.grads.size != self.count or len(flat.parameters) != len(self.parameters) or \
                any(mine is not theirs for mine, theirs in zip(self.parameters, flat.parameters)):
            return
        flat.place_grads(self.slot)
        self.views = list(flat.grad_views)
