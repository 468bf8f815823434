"""Gradients summed over the processes of one node in MPI-3 shared memory, without sending them through MPI.

Every process owns a slot of one shared window (MPI_Win_allocate_shared over a communicator whose processes
all share memory): the parameters' gradients side by side, in model.parameters() order. From the optimizer's
first step on, its flat gradient buffer (nbconv.flat_parameters) is moved into the slot, so the layers write
their gradients straight into shared memory.

The values are cut into pieces (a layer's parameters, in pieces of at most PIECE_VALUES). A piece's sum is
slot 0 + slot 1 + ... in rank order, written into slot 0 and copied into every other slot; whichever process
sums a piece, every process gets the same bits (for 2 processes, MPI_Allreduce's a + b). Each process marks
a layer done (a step stamp in a third window) once its backward has written that layer's gradients; a
process whose backward is over claims pieces one at a time (an atomic counter, MPI_Fetch_and_op) and sums
each as soon as every process has marked its layer: a process that finished backward first sums, while it
would otherwise wait, the layers the others have finished too (the last layers', most of the values), and
the last one to finish finds little left. A barrier then ends the step: every slot holds the whole sum, and
each process's optimizer steps from its own slot. No process writes into another's slot before that
process has marked the layer, and none marks a layer of the next step before the barrier, so one barrier a
step suffices.

A small second window carries each process's step totals (float64: loss sum, correct predictions, the
Ctrl-C flag), in two sets used in turn by step parity (a process may write its next step's totals while
another still reads this step's), summed in rank order by every process after the barrier.
"""
import os

import numpy as np

from .flat_parameters import buffers_holding_grads

ALIGN_BYTES = 64  # a cache line: slots and each process's totals and marks start on one

PIECE_VALUES = 32768  # the most values one claim sums (a claim costs ~3 us): LeNet-5's 61,706 in 6 pieces

SHARED_MEMORY_DIR = "/dev/shm"  # where MPICH and Open MPI place shared windows on Linux


def padded_count(count, dtype):
    """Values a slot of `count` values holds, rounded up so that every slot starts on a cache line."""
    align = ALIGN_BYTES // np.dtype(dtype).itemsize or 1
    return -(-max(count, 1) // align) * align


def window_sizes(count, dtype, regions):
    """Bytes a process's part of each of SharedSum's windows holds: (its gradient slot, its two sets of totals,
    its marks: the claim counter and a step stamp a region), each a whole number of cache lines."""
    return (padded_count(count, dtype) * np.dtype(dtype).itemsize, ALIGN_BYTES * 2,
            -(-(1 + regions) * 8 // ALIGN_BYTES) * ALIGN_BYTES)


def window_bytes(count, dtype, regions, processes):
    """Bytes of shared memory SharedSum's windows take on the node, all processes' parts together."""
    return processes * sum(window_sizes(count, dtype, regions))


def shared_memory_room(bytes_needed, directory=SHARED_MEMORY_DIR):
    """(whether `directory` has room for bytes_needed more, the bytes free there); (True, None) where it cannot
    be asked. The MPI maps shared windows there without reserving their pages, so a window larger than the
    room left would end a process with SIGBUS at its first write past the room, not with an MPI error
    (a container's default /dev/shm is 64 MB)."""
    try:
        stat = os.statvfs(directory)
    except OSError:
        return True, None
    free = stat.f_bavail * stat.f_frsize
    return free >= bytes_needed + bytes_needed // 8, free  # a margin for the MPI's own segments


def pieces_of(regions, piece_values=PIECE_VALUES):
    """[(start, stop, region index)]: each region [start, stop) cut into pieces of at most piece_values values,
    in the regions' order."""
    pieces = []
    for index, (start, stop) in enumerate(regions):
        for first in range(start, stop, piece_values):
            pieces.append((first, min(stop, first + piece_values), index))
    return pieces


class SharedSum:
    """`count` values of `dtype` per process in a shared window over `comm` (every process of `comm` on one node),
    summed piece by piece as `regions` ([start, stop) ranges covering them, each marked done by region_done)
    become ready on every process. slots[r] is process r's gradient slot, a numpy view of shared memory."""

    def __init__(self, MPI, comm, count, dtype, regions=None, totals=3):
        self.MPI, self.comm = MPI, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        dtype = np.dtype(dtype)
        regions = [(0, count)] if regions is None else list(regions)
        self.pieces = pieces_of(regions)
        slot_bytes, totals_bytes, marks_bytes = window_sizes(count, dtype, len(regions))
        self.windows = [MPI.Win.Allocate_shared(slot_bytes, dtype.itemsize, comm=comm),
                        MPI.Win.Allocate_shared(totals_bytes, 8, comm=comm),
                        MPI.Win.Allocate_shared(marks_bytes, 8, comm=comm)]
        for window in self.windows:  # one passive epoch for the job: loads and stores, ordered by Win.Sync
            window.Lock_all(MPI.MODE_NOCHECK)
        gradients, sums, self.marks_window = self.windows
        self.slots = [np.frombuffer(gradients.Shared_query(rank)[0], dtype, count) for rank in range(self.size)]
        self.totals = [np.frombuffer(sums.Shared_query(rank)[0], np.float64, ALIGN_BYTES // 4).reshape(2, -1)[:, :totals]
                       for rank in range(self.size)]  # two sets a process, each on its own cache line
        # per process: [claim counter (rank 0's only), the step each region was last marked done in]
        self.marks = [np.frombuffer(self.marks_window.Shared_query(rank)[0], np.int64, 1 + len(regions))
                      for rank in range(self.size)]
        self.marks[self.rank][...] = 0
        self.step = self.pieces_summed = 0  # pieces_summed: by this process, over all steps
        self.comm.Barrier()  # every process's marks cleared before any looks at them
        self._one, self._claimed = np.ones(1, np.int64), np.zeros(1, np.int64)

    def begin_step(self):
        self.step += 1

    def region_done(self, index):
        """This process's values of region `index` are final for this step (stores ordered before the mark)."""
        self.marks_window.Sync()
        self.marks[self.rank][1 + index] = self.step

    def _claim(self):
        """The next piece of this step nobody has claimed (an index >= len(pieces) when none is left)."""
        self.marks_window.Fetch_and_op(self._one, self._claimed, 0, 0, self.MPI.SUM)
        self.marks_window.Flush(0)
        return int(self._claimed[0]) - (self.step - 1) * (len(self.pieces) + self.size)

    def _wait_for(self, region):
        """Spin until every process has marked `region` done in this step."""
        column, step = 1 + region, self.step
        while True:
            self.marks_window.Sync()
            if all(marks[column] == step for marks in self.marks):
                self.marks_window.Sync()  # the others' gradients read after their marks (weakly ordered CPUs)
                return

    def reduce(self, totals=None):
        """Every slot becomes the sum of all slots (once every process has called this). Marks every region
        done for this process (its values must be final), sums the pieces it claims, then a barrier.
        totals: this process's float64 totals, summed in rank order with the others' and returned (None:
        none, returns None)."""
        parity = self.step % 2
        if totals is not None:
            self.totals[self.rank][parity] = totals
        self.marks_window.Sync()
        self.marks[self.rank][1:] = self.step
        slots = self.slots
        while True:
            claimed = self._claim()
            if claimed >= len(self.pieces):
                break
            start, stop, region = self.pieces[claimed]
            self._wait_for(region)
            first = slots[0][start:stop]
            for slot in slots[1:]:
                np.add(first, slot[start:stop], out=first)
            for slot in slots[1:]:
                slot[start:stop] = first
            self.pieces_summed += 1
        for window in self.windows:
            window.Sync()
        self.comm.Barrier()
        for window in self.windows:
            window.Sync()
        if totals is None:
            return None
        summed = self.totals[0][parity].copy()
        for other in self.totals[1:]:
            summed += other[parity]
        return summed

    def free(self):
        """Free the windows (collective: every process of the communicator calls it). The slots' views are
        invalid after it."""
        for window in self.windows:
            window.Unlock_all()
            window.Free()
        self.windows, self.slots, self.totals, self.marks = [], [], [], []


class SharedGradientReducer:
    """Sums `model`'s parameter gradients (numpy, one dtype) over `comm`, all of whose processes share memory,
    through a SharedSum whose regions are the layers' parameters (summed as the layers finish backward, last
    layers first, when `layer_done` is given to the model's backward as its after_layer). After finish, each
    parameter's .grad is its view of this process's slot, holding the sum; where the optimizer's flat
    gradient buffer covers the same parameters in the same order, it lives in the slot, and nothing is
    copied."""

    def __init__(self, model, MPI, comm):
        self.model = model
        self.parameters = list(model.parameters())
        dtype = self.parameters[0].value.dtype
        sizes = [int(parameter.value.size) for parameter in self.parameters]
        self.count = sum(sizes)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int).tolist()
        # one region a top-level layer, when their parameters are model.parameters() in that order; else one
        layers = [layer for layer in getattr(model, "layers", [model]) if layer.parameters()]
        by_layer = [parameter for layer in layers for parameter in layer.parameters()]
        self.layer_parameters = {}  # id(layer) -> (region index, [(parameter, its index)])
        regions = [(0, self.count)]
        if len(by_layer) == len(self.parameters) and all(a is b for a, b in zip(by_layer, self.parameters)):
            regions = []  # in backward's order: the pieces in the order they become ready
            index_of = {id(parameter): position for position, parameter in enumerate(self.parameters)}
            for layer in reversed(layers):
                positions = [index_of[id(parameter)] for parameter in layer.parameters()]
                self.layer_parameters[id(layer)] = (len(regions), positions)
                regions.append((offsets[min(positions)], offsets[max(positions) + 1]))
        self.sum = SharedSum(MPI, comm, self.count, dtype, regions)
        self.slot = self.sum.slots[self.sum.rank]
        self.views = [self.slot[offsets[i]:offsets[i + 1]].reshape(parameter.value.shape)
                      for i, parameter in enumerate(self.parameters)]

    @staticmethod
    def bytes_needed(model, processes):
        """Bytes of shared memory a reducer for `model` takes on the node (every process's slot)."""
        parameters = model.parameters()
        count = sum(int(parameter.value.size) for parameter in parameters)
        layers = len(getattr(model, "layers", [model]))
        return window_bytes(count, parameters[0].value.dtype, layers, processes)

    def release(self):
        """Free the shared windows (collective) after moving this model's gradients and the optimizer's flat
        gradient buffer out of the slot into private memory, so that the model and its optimizer go on
        without them (another world or reducer, or none)."""
        flat = buffers_holding_grads(self.slot)
        if flat is not None:
            flat.place_grads(np.empty_like(self.slot))
        for parameter in self.parameters:
            grad = parameter.grad
            if isinstance(grad, np.ndarray) and np.shares_memory(grad, self.slot):
                parameter.grad = grad.copy()
        self.views, self.slot = [], None
        self.sum.free()

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
        self.sum.begin_step()
        self._take_flat_buffer()

    def layer_done(self, layer):
        """After a layer's backward: its gradients in the slot (copied there unless the layer wrote them there,
        zeros where it left none), and its region marked done for the other processes to sum."""
        entry = self.layer_parameters.get(id(layer))
        if entry is None:
            return
        region, positions = entry
        for position in positions:
            self._put(position, True)
        self.sum.region_done(region)

    def _put(self, position, have_gradients):
        parameter, view = self.parameters[position], self.views[position]
        grad = parameter.grad if have_gradients else None
        if grad is view:
            return
        if grad is None:
            view[...] = 0
        else:
            view[...] = np.asarray(grad).reshape(view.shape)
        parameter.grad = view

    def finish(self, have_gradients=True, totals=None):
        """Put this process's remaining gradients in its slot (zeros without images or gradient), sum the slots,
        point each .grad at its view of the sum; returns the summed totals (see SharedSum.reduce)."""
        for position in range(len(self.parameters)):
            self._put(position, have_gradients)
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
