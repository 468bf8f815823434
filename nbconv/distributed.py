"""Data-parallel training over MPI: K processes train one model, each on its shard of every global batch.

Launched as `mpiexec -n K python -m nbconv train ...` (MPICH, Open MPI, Intel MPI; Slurm and PBS start
mpiexec). Every process builds the same model from the same seed (rank 0's weights are broadcast once to
be sure), reads the contiguous slice of each global batch that `shard_bounds` gives it, runs forward and
backward on it, and the parameter gradients are summed with MPI Allreduce over flat buffers grouped into
buckets, always started in the same order, so every process applies the same update and the run is
reproducible. The loss is the mean over the global batch: each process scales its loss gradient by its
share of the batch (n_rank / N), so uneven shards weigh right and the same command trains the same model
whatever K is (up to float rounding in the sums). With balance=True (NBCONV_MPI_BALANCE=1) the slices follow
the processes' measured speeds instead of being even (see MPIWorld).

On one node (every process sharing its memory), the gradients are instead summed in MPI-3 shared memory,
where the layers wrote them, by whichever processes are done with backward (nbconv.shared_gradients): the
same rank-order sums, no messages; NBCONV_MPI_SHARED=0 keeps Allreduce.

Overlap: a bucket's non-blocking Iallreduce starts as soon as backward has finished the layers holding its
parameters, while the earlier layers still run backward.

Batch normalization (when a model has it) keeps per-process batch statistics, as PyTorch's
DistributedDataParallel and Horovod do by default: synchronising them costs one extra Allreduce per batch
normalization layer in the forward pass and one in the backward pass, a latency on the critical path of
every layer, and only matters when a shard gets too small for stable statistics (a few images); with per-
process statistics the results depend on K for models with batch normalization. Their running statistics
(layer attributes running_mean / running_var) are averaged over the processes before each test pass, so the
evaluation and the checkpoint see one set.

GPUs: one process per GPU; the local rank (rank among the processes on the same node) picks the device.
Device gradients go to MPI directly through the CUDA array interface when the MPI is CUDA-aware
(`cuda_aware_mpi`), else through one host staging buffer per bucket.

Faults: `guard` turns an exception on any rank into a message naming the rank and the cause, then
MPI_Abort, which ends every process of the job (mpiexec also ends the job when a process is killed).
A killed process says nothing, and its end may reach the others first (MPICH: a failed shared-memory read
in a collective) rather than the launcher: while a process waits for the others in a collective, a
sleeping thread (nbconv.peer_watch) looks every half second whether a peer process on its node has
vanished, and the process then names that rank in one line and aborts; an abort for another cause names
the vanished peer instead. Peers on other nodes are not watched.
Ctrl-C: mpiexec forwards SIGINT to every process; `interrupt_flag` turns it into a flag that travels with
each step's loss totals, so every process stops at the same step and rank 0 saves.

Only this module imports mpi4py, and only when asked (`connect`): the rest of nbconv is single-process.
"""
import collections
import contextlib
import functools
import os
import signal
import sys
import threading
import time
import traceback

import numpy as np

from . import backend
from .peer_watch import PeerWatch, process_start_time

# The environment variables launchers set to the number of processes: MPICH and Intel MPI (Hydra), Open MPI,
# MVAPICH, and the PMI of Slurm's srun.
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE")
RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "PMIX_RANK")
BUCKET_BYTES = 1 << 20  # gradients reduced together; 1 MiB: big enough to amortise latency, small enough to overlap
RUNNING_STATISTICS = ("running_mean", "running_var")  # batch normalization's, averaged before each test pass
INSTALL_HINT = 'pip install -e ".[mpi]" (mpi4py and MPICH from PyPI)'
BALANCE_EVERY = 8  # steps between two updates of the shares when balancing by speed
MINIMUM_SHARE = 0.1  # when balancing, no process takes less than this fraction of an even share
ABORT_GRACE_SECONDS = 0.2  # between the failure line and MPI_Abort, for the launcher to forward the line


# MPICH settings nbconv starts MPI with, in groups: a group is left alone when the environment sets any of its
# variables (the user's environment always wins, and a group's values only make sense together).
MPICH_SETTINGS = (
    # MPICH copies large messages between processes of a node by reading the peer's memory (CMA); when the peer
    # has been killed that read fails with an error MPICH treats as fatal whatever the error handler, and it
    # ends the job before the peer watch can name the vanished rank. Without CMA the wait for a vanished peer
    # is an ordinary wait, which the peer watch ends with that name.
    {"MPIR_CVAR_CH4_CMA_ENABLE": "0"},
    # Without CMA, a node's large messages go through the shared-memory queue's cells: 64 KB cells instead of
    # 8 KB make the gradients' Allreduce 0.6-0.75x as long for 246 KB and 1 MB buffers on 2 processes
    # (benchmarks/distributed.py reductions); 8 cells instead of 64 keep the queue's memory MPICH's own
    # (512 KB a process); the pack buffers must hold a cell.
    {"MPIR_CVAR_CH4_SHM_POSIX_IQUEUE_CELL_SIZE": "65536", "MPIR_CVAR_CH4_SHM_POSIX_IQUEUE_NUM_CELLS": "8",
     "MPIR_CVAR_CH4_PACK_BUFFER_SIZE": "65536"},
)


def apply_mpich_settings(environ):
    """Put MPICH_SETTINGS into `environ` (os.environ, before MPI starts), each group only where `environ` sets
    none of its variables. Other MPIs ignore MPICH's variables."""
    for group in MPICH_SETTINGS:
        if not any(variable in environ for variable in group):
            environ.update(group)


class DistributedUnavailableError(RuntimeError):
    """mpi4py (or an MPI library for it) is missing."""


def launched_size():
    """The number of processes the launcher started (from its environment variables), 1 outside mpiexec."""
    for name in SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


def launched_rank():
    for name in RANK_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


def shard_bounds(count, rank, size):
    """[start, stop) of rank's contiguous share of `count` items: the first count % size ranks get one more."""
    base, extra = divmod(count, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def weighted_shard_bounds(count, rank, shares):
    """[start, stop) of rank's contiguous share of `count` items when the processes take the fractions
    `shares` (summing to 1) of every batch; the same on every process for the same shares."""
    cuts = np.rint(np.cumsum(shares, dtype=np.float64) * count).astype(np.int64)
    cuts = np.minimum(np.maximum.accumulate(cuts), count)
    cuts[-1] = count
    return (int(cuts[rank - 1]) if rank else 0), int(cuts[rank])


def balance_requested():
    """NBCONV_MPI_BALANCE=1: share each batch by the processes' measured speeds (MPIWorld(balance=True))."""
    value = os.environ.get("NBCONV_MPI_BALANCE", "0")
    if value not in ("0", "1"):
        raise ValueError(f"NBCONV_MPI_BALANCE={value!r}: expected 0 or 1")
    return value == "1"


def overlap_requested():
    """NBCONV_MPI_OVERLAP=1 or 0 forces reducing during backward on or off; unset (or "auto"): None, the
    world decides (MPIWorld: on when the processes span several nodes)."""
    value = os.environ.get("NBCONV_MPI_OVERLAP", "auto")
    if value not in ("0", "1", "auto"):
        raise ValueError(f"NBCONV_MPI_OVERLAP={value!r}: expected 0, 1 or auto")
    return None if value == "auto" else value == "1"


def shared_requested():
    """NBCONV_MPI_SHARED=0 or 1 forces summing gradients in shared memory off or on; unset (or "auto"): None,
    the world decides (MPIWorld: on when every process is on one node and reductions wait for backward)."""
    value = os.environ.get("NBCONV_MPI_SHARED", "auto")
    if value not in ("0", "1", "auto"):
        raise ValueError(f"NBCONV_MPI_SHARED={value!r}: expected 0, 1 or auto")
    return None if value == "auto" else value == "1"


def mpi_library():
    """(a one-line description of the MPI library mpi4py runs on, or None, and why not when None).

    Does not initialise MPI (MPI_Get_library_version may be called before MPI_Init)."""
    try:
        import mpi4py
        if "mpi4py.MPI" not in sys.modules:
            mpi4py.rc.initialize = False
        from mpi4py import MPI
    except ImportError as error:
        return None, f"not installed ({error}); {INSTALL_HINT}"
    except Exception as error:  # noqa: BLE001 - an mpi4py that finds no libmpi fails in various ways
        return None, f"mpi4py {getattr(sys.modules.get('mpi4py'), '__version__', '?')} finds no MPI library: {error}"
    version = MPI.Get_library_version().strip().splitlines()[0]
    return f"{' '.join(version.split())} (MPI {'.'.join(map(str, MPI.Get_version()))}, mpi4py {mpi4py.__version__})", None


def cuda_aware_mpi():
    """True when MPI can read device memory (mpi4py's query where it has one; NBCONV_MPI_CUDA_AWARE=1/0
    overrides, for MPIs that are CUDA-aware without saying so)."""
    forced = os.environ.get("NBCONV_MPI_CUDA_AWARE")
    if forced in ("0", "1"):
        return forced == "1"
    from mpi4py import MPI
    query = getattr(MPI, "Query_cuda_support", None)
    try:
        return bool(query()) if query is not None else False
    except Exception:  # noqa: BLE001 - not supported by this MPI
        return False


class Terminated(Exception):
    """The process received SIGTERM."""

    def format_message(self):
        return str(self)


class SingleProcess:
    """The world of one process: no sharding, no communication. The training loop's default."""

    rank, size, local_rank, local_size = 0, 1, 0, 1
    is_root = True
    distributed = False

    def shard(self, items):
        return items

    def backward(self, model, grad_logits, local_count, global_count, totals=None):
        model.backward(grad_logits, need_input_grad=False)

    def step_totals(self, loss_sum, correct):
        return loss_sum, correct

    def sum(self, value):
        return value

    def barrier(self):
        pass

    def broadcast_parameters(self, model):
        pass

    def average_running_statistics(self, model):
        pass

    @contextlib.contextmanager
    def interrupt_flag(self):
        yield

    @contextlib.contextmanager
    def guard(self):
        yield

    def describe(self):
        return "1 process"


SINGLE = SingleProcess()


def _waits_for_every_process(method):
    """Marks an MPIWorld method in which every process must take part (a collective): while it runs, the
    peer watch looks whether a peer on this node has vanished, since then the wait would never end."""
    @functools.wraps(method)
    def watched(self, *args, **kwargs):
        with self.watch.armed():
            return method(self, *args, **kwargs)
    return watched


class MPIWorld:
    """K processes under MPI. `comm` defaults to MPI.COMM_WORLD.

    overlap: reduce each bucket as soon as backward has produced it (non-blocking Allreduce, progressed
    between layers), or, False, every bucket after the whole backward pass (blocking Allreduce). None (the
    default) overlaps only when the processes span several nodes: within one node a reduction is a
    shared-memory copy of well under a millisecond, nothing to hide, and polling for it costs the cores
    the computation needs (benchmarks/distributed.py measured blocking ahead on one machine); between nodes
    a reduction can take as long as backward, and hiding it pays (docs/distributed.md, cost model).

    balance=True shares every batch by the processes' measured speeds instead of evenly: each step, every
    process times its own work (from taking its shard to the moment its gradients are ready),
    the times travel with the step's loss totals, and every balance_every steps the shares become
    proportional to the processes' images per second over those steps (the same shares on every process,
    computed from the same numbers). For processes on cores of unequal speed (a shared machine, vCPUs that
    share a physical core, mixed nodes): a synchronous step lasts as long as the slowest process. The loss
    curve stays that of the global batch (uneven shards are weighted by their size), but which process
    sums which images depends on timing, so runs agree to float rounding, not to the bit.

    shared: sum the gradients in MPI-3 shared memory (nbconv.shared_gradients) instead of Allreduce, where
    every process is on this node and the reductions wait for backward; None (the default): when there are
    several processes; True: also for one (tests); False: Allreduce always."""

    distributed = True

    def __init__(self, comm=None, bucket_bytes=BUCKET_BYTES, overlap=None, balance=False, balance_every=BALANCE_EVERY,
                 shared=None):
        # Read when MPI starts: on the import below, or at Init_thread after mpi_library().
        apply_mpich_settings(os.environ)
        try:
            from mpi4py import MPI
        except ImportError as error:
            raise DistributedUnavailableError(f"distributed training needs mpi4py and an MPI: {INSTALL_HINT} "
                                              f"({error})") from None
        if not MPI.Is_initialized():  # mpi_library() imported mpi4py without starting MPI
            MPI.Init_thread()
            import atexit
            atexit.register(lambda: MPI.Is_finalized() or MPI.Finalize())
        self.MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = local.Get_rank(), local.Get_size()
        pid = os.getpid()
        neighbours = local.allgather((self.rank, pid, process_start_time(pid)))  # the processes on this node
        local.Free()
        import socket
        self.processes = self.comm.allgather((pid, socket.gethostname()))  # by rank
        # a peer on this node that vanishes (killed) is named by this process rather than left unexplained
        self.watch = PeerWatch({rank: (peer, started) for rank, peer, started in neighbours if rank != self.rank},
                               self._peer_gone).start()
        self.is_root = self.rank == 0
        self.bucket_bytes = int(bucket_bytes)
        self.nodes = self.comm.allreduce(1 if self.local_rank == 0 else 0)  # the nodes the processes span
        self.overlap = self.nodes > 1 if overlap is None else bool(overlap)
        # gradients summed in shared memory (nbconv.shared_gradients) where every process shares this node's
        # memory and the reductions wait for backward; False: MPI Allreduce always
        self.shared = self.local_size == self.size and (self.size > 1 if shared is None else bool(shared))
        self._shared_reducer = None
        self.sum_during_backward = True  # shared: a process done with backward sums the layers all others are done with
        self.interrupted = self.stop_agreed = False
        self._abort_lock = threading.Lock()
        self._reducer = None
        self._totals = None  # this step's totals, reduced alongside its gradients (see backward)
        self.balance, self.balance_every = bool(balance), int(balance_every)
        self.shares = np.full(self.size, 1.0 / self.size)  # of every batch, by rank; updated when balancing
        self._step_started = self._computed = None  # this step's start, and its compute seconds and images
        self._image_seconds = []  # per step: every process's seconds per image (0: not measured)

    # -- sharding and small totals ------------------------------------------------------------------------

    def shard(self, items):
        """This process's contiguous slice of `items` (a global batch's indices, the test set)."""
        if self.balance:
            if self._step_started is None:  # a step's work starts when its process takes its shard
                self._step_started = time.perf_counter()
            start, stop = weighted_shard_bounds(len(items), self.rank, self.shares)
        else:
            start, stop = shard_bounds(len(items), self.rank, self.size)
        return items[start:stop]

    @_waits_for_every_process
    def sum(self, value):
        """`value` (a number) summed over the processes, as a float (exact for counts below 2**53)."""
        total = np.empty(1)
        self.comm.Allreduce(np.array([float(value)]), total, op=self.MPI.SUM)
        self._step_started = None  # shards taken for an evaluation are not a training step
        return float(total[0])

    @_waits_for_every_process
    def step_totals(self, loss_sum, correct):
        """(loss summed over the global batch, correct predictions in it). Also agrees on whether any process
        received Ctrl-C: stop_requested() then answers True on every process after the same step. When this
        step's backward was given the same totals, they were reduced with its gradients, and this returns them
        without another collective."""
        if self._totals is not None:
            totals, self._totals = self._totals, None
            self.stop_agreed = bool(totals[2])
            return float(totals[0]), int(totals[1])
        sent = np.zeros(3 + (self.size if self.balance else 0))
        sent[:3] = float(loss_sum), float(correct), float(self.interrupted)
        if self.balance and self._computed is not None and self._computed[1]:
            sent[3 + self.rank] = self._computed[0] / self._computed[1]
        totals = np.empty_like(sent)
        self.comm.Allreduce(sent, totals, op=self.MPI.SUM)
        self.stop_agreed = bool(totals[2])
        if self.balance:
            self._rebalance(totals[3:])
        return float(totals[0]), int(totals[1])

    def _rebalance(self, image_seconds):
        """Record every process's seconds per image of this step; every balance_every steps, make the shares
        proportional to the processes' speeds (processes not measured in some step keep their share)."""
        self._image_seconds.append(image_seconds)
        self._computed = self._step_started = None
        if len(self._image_seconds) < self.balance_every:
            return
        seconds = np.array(self._image_seconds)
        self._image_seconds = []
        measured = (seconds > 0).all(axis=0)
        if not measured.any():
            return
        speed = np.zeros(self.size)
        speed[measured] = 1.0 / np.median(seconds[:, measured], axis=0)
        # unmeasured processes keep their share; the measured ones split the rest by speed
        free = 1.0 - self.shares[~measured].sum()
        shares = self.shares.copy()
        shares[measured] = free * speed[measured] / speed[measured].sum()
        shares = np.maximum(shares, MINIMUM_SHARE / self.size)  # a process with no images could not be timed
        self.shares = shares / shares.sum()

    def stop_requested(self):
        """Whether any process received Ctrl-C, as agreed at the last step (the same answer everywhere)."""
        return self.stop_agreed

    @_waits_for_every_process
    def barrier(self):
        self.comm.Barrier()

    @_waits_for_every_process
    def broadcast_parameters(self, model):
        """Copy rank 0's parameters to every process (a no-op when they already agree, as they should)."""
        for parameter in model.parameters():
            host = np.ascontiguousarray(backend.to_host(parameter.value))
            self.comm.Bcast(host, root=0)
            parameter.value = backend.transfer(host, backend.backend_of(parameter.value))

    @_waits_for_every_process
    def average_running_statistics(self, model):
        """Average the layers' running_mean / running_var (batch normalization's, gathered per process from
        its own shards) over the processes, so that evaluation and the checkpoint see one set."""
        for layer in getattr(model, "layers", [model]):
            for name in RUNNING_STATISTICS:
                value = getattr(layer, name, None)
                if value is None or not hasattr(value, "shape"):
                    continue
                host = np.ascontiguousarray(backend.to_host(value), dtype=np.float64)
                self.comm.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
                averaged = (host / self.size).astype(value.dtype)
                setattr(layer, name, backend.transfer(averaged, backend.backend_of(value)))

    # -- gradients ----------------------------------------------------------------------------------------

    @_waits_for_every_process
    def backward(self, model, grad_logits, local_count, global_count, totals=None):
        """Backward on this shard, then every parameter's .grad holds the global batch's gradient (summed
        over the processes). grad_logits is the gradient of this shard's mean loss (None for an empty shard).

        totals: (this shard's loss sum, its correct predictions), known before backward: their reduction (with
        the Ctrl-C flag) starts first and completes with the gradients', so that the step's step_totals needs
        no collective (and no meeting) of its own. Not with balance=True, whose totals carry the time of the
        backward pass."""
        shared = self._shared_reducer_for(model)
        if shared is None and (self._reducer is None or self._reducer.model is not model):
            self._reducer = GradientReducer(model, self.comm, self.bucket_bytes)
        reducer = shared or self._reducer
        reducer.begin()
        self._totals = None
        if totals is not None and not self.balance:  # started first on every process, whatever its shard
            self._totals = np.array([float(totals[0]), float(totals[1]), float(self.interrupted)])
            if shared is None:
                reducer.pending.append(self.comm.Iallreduce(self.MPI.IN_PLACE, self._totals, op=self.MPI.SUM))
        if local_count:
            if local_count != global_count:
                grad_logits = scale(grad_logits, local_count / global_count)
            # shared: each layer's gradients marked ready for the processes that finish first to sum
            early = self.overlap or (shared is not None and self.sum_during_backward and hasattr(model, "layers"))
            model.backward(grad_logits, need_input_grad=False, after_layer=reducer.layer_done if early else None)
        if self.balance and self._step_started is not None:
            self._computed = (time.perf_counter() - self._step_started, local_count)
        if shared is not None:
            summed = shared.finish(have_gradients=bool(local_count), totals=self._totals)
            self._totals = summed
        else:
            reducer.finish(have_gradients=bool(local_count), blocking=not self.overlap)

    def _shared_reducer_for(self, model):
        """The shared-memory reducer for `model` when this world sums in shared memory (every process on one
        node, reductions after backward, host parameters of one dtype), else None. Made on first use (a
        collective: every process gets here at the same step, deciding from the same model); a reducer made
        for another model before is released first. Where the MPI cannot allocate shared windows, or a process's
        /dev/shm has no room for them, every process falls back to Allreduce for good."""
        if not self.shared or self.overlap:
            return None
        reducer = self._shared_reducer
        if reducer is not None and reducer.model is model:
            return reducer
        from .shared_gradients import SharedGradientReducer, shared_memory_room
        if not SharedGradientReducer.applies(model):
            return None
        if reducer is not None:  # another model: its windows go (one model's slots on the node at a time)
            self._shared_reducer = None
            reducer.release()
        needed = SharedGradientReducer.bytes_needed(model, self.size)
        room, _ = shared_memory_room(needed)
        if not self.comm.allreduce(room, op=self.MPI.LAND):  # every process decides alike, or the sums hang
            if self.is_root:
                sys.stderr.write(f"nbconv: summing gradients with MPI Allreduce: the shared-memory sum needs "
                                 f"{needed / 2**20:.0f} MB of /dev/shm and a process has less free there "
                                 f"(a container's --shm-size)\n")
            self.shared = False
            return None
        try:
            made = SharedGradientReducer(model, self.MPI, self.comm)
        except (self.MPI.Exception, NotImplementedError):  # no MPI-3 shared windows here
            made = None
        if not self.comm.allreduce(made is not None, op=self.MPI.LAND):
            self.shared = False  # Allreduce for good, on every process
            return None
        self._shared_reducer = made
        return made

    # -- Ctrl-C and faults -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def interrupt_flag(self):
        """While inside: Ctrl-C sets a flag that step_totals shares (a second one interrupts at once)."""
        def flag(signum, frame):
            self.interrupted = True
            signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            previous = signal.signal(signal.SIGINT, flag)
        except ValueError:  # not the main thread: leave Ctrl-C alone
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    @contextlib.contextmanager
    def guard(self):
        """An exception escaping on any process ends the whole job: a message naming the rank and the cause
        on stderr, then MPI_Abort (the other processes may be waiting in a collective and would hang).
        SIGTERM (kill PID, a scheduler's time limit) becomes such an exception too."""
        def terminated(signum, frame):
            raise Terminated(f"terminated by {signal.Signals(signum).name}")
        try:
            signal.signal(signal.SIGTERM, terminated)
        except ValueError:  # not the main thread
            pass
        try:
            yield
        except SystemExit:
            raise  # a deliberate exit (after a Ctrl-C every process takes together)
        except BaseException as error:  # noqa: BLE001 - any failure must end the job
            message = getattr(error, "format_message", None)
            cause = message() if message else f"{type(error).__name__}: {error}"
            if isinstance(error, KeyboardInterrupt):
                cause = "interrupted (Ctrl-C) outside the training steps"
            if not isinstance(error, (KeyboardInterrupt,)) and not message:
                traceback.print_exc(file=sys.stderr)
            self.abort(cause, 130 if isinstance(error, KeyboardInterrupt) else 1)

    def abort(self, cause, code=1):
        """One line on stderr, then MPI_Abort. When a peer process on this node has vanished, the line names
        it instead of `cause` (which is then an MPI error or a SIGTERM from the launcher, results of it)."""
        gone = self.watch.gone()
        # Stopped before taking the lock: the watch thread may itself be here, waiting for the lock, and
        # stop() waits for that thread to end.
        self.watch.stop()
        with self._abort_lock:  # one line, from whichever thread comes first: the other waits for the end
            sys.stdout.flush()
            if gone is not None:
                pid, host = self.watch.peers[gone][0], self.processes[self.rank][1]  # the watched process, this node
                sys.stderr.write(f"nbconv: rank {gone} of {self.size} is gone: its process {pid} on {host} has "
                                 f"ended (killed?); rank {self.rank} ends all {self.size} processes\n")
            else:
                sys.stderr.write(f"nbconv: rank {self.rank} of {self.size} failed: {cause}; ending all {self.size} "
                                 f"processes\n")
            sys.stderr.flush()
            # The launcher forwards this process's output from a pipe; MPI_Abort makes it kill every process at
            # once, and a line still in the pipe can be lost with them. A moment lets it reach the user first.
            time.sleep(ABORT_GRACE_SECONDS)
            self.comm.Abort(code)
            os._exit(code)  # MPICH's Abort returns when the launcher's SIGTERM reaches a handler (guard's) first

    def _peer_gone(self, rank):
        """The peer watch's call, from its thread, while this process waits in a collective."""
        self.abort(f"rank {rank} is gone")

    def describe(self):
        return f"{self.size} processes (MPI)"

    def roster(self):
        """'rank 0: pid 123 on node1, rank 1: ...': what a launcher's message about a killed process id means."""
        return ", ".join(f"rank {rank}: pid {pid} on {host}" for rank, (pid, host) in enumerate(self.processes))


def scale(array, factor):
    """array * factor, in place on the host (a small round trip for a device array: it is the logits' gradient)."""
    if backend.is_device_array(array):
        host = backend.to_host(array)
        host *= host.dtype.type(factor)
        return backend.to_device(host)
    array *= array.dtype.type(factor)
    return array


class GradientReducer:
    """Sums a model's parameter gradients over `comm`, bucket by bucket.

    Buckets: the parameters in backward order (last layer first), cut into flat buffers of about
    bucket_bytes and one dtype each. Bucket i's reduction always starts before bucket i + 1's, on every
    process (non-blocking collectives must start in the same order everywhere). After `finish`, each
    parameter's .grad is a view into its bucket, or, where the layers wrote the gradients into an optimizer's
    flat buffer (the CPU optimizers' from their first step on, nbconv.flat_parameters), that buffer's view,
    reduced in place: no copies in or out.
    """

    def __init__(self, model, comm, bucket_bytes=BUCKET_BYTES):
        from mpi4py import MPI
        self.MPI, self.model, self.comm = MPI, model, comm
        layers = [layer for layer in getattr(model, "layers", [model]) if layer.parameters()]
        ordered = [(layer, parameter) for layer in reversed(layers) for parameter in layer.parameters()]
        self.buckets, self.bucket_of = [], {}
        for layer, parameter in ordered:
            nbytes = parameter.value.size * parameter.value.dtype.itemsize
            last = self.buckets[-1] if self.buckets else None
            if last is None or last.dtype != parameter.value.dtype or last.nbytes + nbytes > bucket_bytes and last.nbytes:
                last = Bucket(parameter.value.dtype)
                self.buckets.append(last)
            last.add(parameter)
            self.bucket_of[id(parameter)] = len(self.buckets) - 1
        # per layer: (bucket index, how many of the layer's parameters it holds), in bucket order
        self.layer_buckets = {id(layer): sorted(collections.Counter(self.bucket_of[id(p)]
                                                                    for p in layer.parameters()).items())
                              for layer in layers}
        self.where = backend.backend_of(ordered[0][1].value) if ordered else "cpu"
        self.through_device = self.where == "cuda" and cuda_aware_mpi()
        for bucket in self.buckets:
            bucket.allocate(self.where, self.through_device)

    def begin(self):
        """Before a backward pass: no reduction started, no gradient yet (a parameter that backward leaves
        without one reduces as zeros, never as last step's values)."""
        self.pending, self.next_bucket, self.ready = [], 0, [0] * len(self.buckets)
        for bucket in self.buckets:
            for parameter in bucket.parameters:
                parameter.grad = None

    def layer_done(self, layer):
        """After a layer's backward: its buckets may be complete; start every complete bucket in order."""
        for index, count in self.layer_buckets.get(id(layer), ()):
            self.ready[index] += count
        while self.next_bucket < len(self.buckets) and \
                self.ready[self.next_bucket] == len(self.buckets[self.next_bucket].parameters):
            self._start(self.next_bucket, blocking=False)
        if self.next_bucket:  # lets MPI progress the gradients' reductions already started (the step's small
            self.MPI.Request.Testall(self.pending)  # totals alone wait for finish: nothing to gain before)

    def _start(self, index, blocking, have_gradients=True):
        bucket = self.buckets[index]
        buffer = bucket.pack(have_gradients)
        if blocking:
            self.comm.Allreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM)
        else:
            self.pending.append(self.comm.Iallreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM))
        self.next_bucket = index + 1

    def finish(self, have_gradients=True, blocking=False):
        """Start the buckets not started yet (all of them without overlap, or for an empty shard), wait for
        every reduction, and point each parameter's .grad at its reduced values."""
        while self.next_bucket < len(self.buckets):
            self._start(self.next_bucket, blocking, have_gradients)
        if self.pending:
            self.MPI.Request.Waitall(self.pending)
        for bucket in self.buckets:
            bucket.unpack()


class Bucket:
    """Some parameters' gradients side by side in one flat buffer (on the parameters' backend; with a host
    copy for MPIs that cannot read device memory)."""

    def __init__(self, dtype):
        self.dtype, self.parameters, self.offsets, self.nbytes, self.size = np.dtype(dtype), [], [], 0, 0

    def add(self, parameter):
        self.parameters.append(parameter)
        self.offsets.append(self.size)
        self.size += parameter.value.size
        self.nbytes = self.size * self.dtype.itemsize

    def allocate(self, where, through_device):
        self.where = where
        self.flat = backend.empty((self.size,), self.dtype, where)
        self.staging = None if where == "cpu" or through_device else np.empty(self.size, self.dtype)

    def pack(self, have_gradients):
        """Make the buffer MPI reduces hold the gradients (zeros for a process with no images in this batch, or
        for a parameter backward left without a gradient) and return it: where the layers wrote the gradients
        side by side into one flat buffer (an optimizer's, nbconv.flat_parameters), that part of it, in
        place; else this bucket's own buffer, the gradients copied in."""
        region = self._written_region() if self.where == "cpu" else None
        self.in_place = region is not None
        if region is not None:
            for parameter in self.parameters:
                grad, view = parameter.grad if have_gradients else None, parameter.grad_buffer
                if grad is None:
                    view[...] = 0
                elif grad is not view:
                    view[...] = np.asarray(grad).reshape(view.shape)
            return region
        for parameter, offset in zip(self.parameters, self.offsets):
            size = parameter.value.size
            grad = parameter.grad if have_gradients else None
            if self.where == "cpu":
                target = self.flat[offset:offset + size]
                if grad is None:
                    target[:] = 0
                else:
                    target[:] = np.asarray(grad).reshape(-1)
            else:
                source = np.zeros(size, self.dtype) if grad is None else \
                    backend.flat(backend.contiguous(grad))
                self.flat[offset:offset + size].copy_to_device(source)
        if self.staging is None:
            if self.where == "cuda":
                from numba import cuda
                cuda.synchronize()  # MPI reads device memory outside CUDA's stream order
            return self.flat
        self.flat.copy_to_host(self.staging)
        return self.staging

    _region_of = _region = None  # the gradient buffers _written_region last saw, and the region they tile

    def _written_region(self):
        """The 1-D numpy array that the parameters' gradient buffers (Parameter.grad_buffer) tile exactly, in
        any order, without gaps (one flat buffer's neighbouring views); None when they do not."""
        buffers = tuple(parameter.grad_buffer for parameter in self.parameters)
        if self._region_of is not None and len(buffers) == len(self._region_of) and \
                all(a is b for a, b in zip(buffers, self._region_of)):
            return self._region
        self._region_of, self._region = buffers, _tiled_region(buffers, self.parameters, self.dtype)
        return self._region

    def unpack(self):
        if getattr(self, "in_place", False):
            for parameter in self.parameters:
                parameter.grad = parameter.grad_buffer
            return
        if self.staging is not None:
            self.flat.copy_to_device(self.staging)
        for parameter, offset in zip(self.parameters, self.offsets):
            parameter.grad = self.flat[offset:offset + parameter.value.size].reshape(parameter.value.shape)


def _tiled_region(buffers, parameters, dtype):
    """A 1-D view of the memory that `buffers` (one per parameter, its shape) cover together, when they are
    C-contiguous numpy views of one base array, of `dtype`, side by side without gaps or overlaps; else None."""
    if not buffers or any(type(buffer) is not np.ndarray or buffer.dtype != dtype or not buffer.flags.c_contiguous
                          or buffer.shape != parameter.value.shape for buffer, parameter in zip(buffers, parameters)):
        return None
    base = buffers[0].base
    if base is None or base.ndim != 1 or base.dtype != dtype or not base.flags.c_contiguous or \
            any(buffer.base is not base for buffer in buffers):
        return None
    origin, itemsize = base.__array_interface__["data"][0], dtype.itemsize
    spans = sorted(((buffer.__array_interface__["data"][0] - origin) // itemsize, buffer.size) for buffer in buffers)
    for (start, size), (following, _) in zip(spans, spans[1:]):
        if start + size != following:
            return None
    start, stop = spans[0][0], spans[-1][0] + spans[-1][1]
    if start < 0 or stop > base.size:
        return None
    return base[start:stop]


def connect(force=False, overlap=None, balance=None):
    """The world this process trains in: MPIWorld when launched by mpiexec with several processes or when
    force is set (--distributed), else SINGLE. Raises DistributedUnavailableError when MPI is needed but
    mpi4py is missing. overlap: see MPIWorld; None reads NBCONV_MPI_OVERLAP (unset: overlap across nodes
    only). balance: share batches by speed (MPIWorld); None reads NBCONV_MPI_BALANCE."""
    if not force and launched_size() <= 1:
        return SINGLE
    return MPIWorld(overlap=overlap_requested() if overlap is None else overlap,
                    balance=balance_requested() if balance is None else balance, shared=shared_requested())


def select_local_device(world):
    """On a node with GPUs, the process's GPU: local rank modulo the number of GPUs."""
    from numba import cuda
    count = len(cuda.gpus)
    if count:
        cuda.select_device(world.local_rank % count)
    return world.local_rank % count if count else None
