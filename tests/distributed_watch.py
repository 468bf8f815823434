"""Run by tests/test_distributed.py under mpiexec -n 2: a peer process that vanishes while rank 0 waits.

Rank 0 starts a stand-in process (`sleep`) and watches it in place of rank 1's own process, whose removal
the launcher would report itself; it writes the stand-in's pid to PID_FILE and waits in a barrier that rank 1
joins only after a minute. The test kills the stand-in: rank 0 must name rank 1 and end the job.
With --raise, rank 0 waits for the stand-in to end and then raises outside any collective: the abort names
the vanished peer rather than the exception. With --in-sum, rank 0 waits in the gradients' sum in shared
memory (the world's backward, nbconv.shared_gradients) instead of a barrier.

python tests/distributed_watch.py PID_FILE [--raise | --in-sum]
"""
import os
import subprocess
import sys
import time

from nbconv import distributed
from nbconv.peer_watch import PeerWatch, process_start_time

world = distributed.MPIWorld(overlap=False)
pid_file = sys.argv[1]
in_sum = "--in-sum" in sys.argv


def wait_for_everyone():
    if not in_sum:
        world.barrier()
        return
    world.backward(model, None, 0, 1)  # no images here: zeros join the sum


with world.guard():
    if in_sum:
        from nbconv import models
        model = models.build("fc3", input_shape=(4,), seed=0)
        assert world._shared_reducer_for(model) is not None  # made by both processes (a collective)
    if world.rank == 0:
        stand_in = subprocess.Popen(["sleep", "120"])  # not reaped until the end: a zombie once killed
        world.watch.stop()
        world.watch = PeerWatch({1: (stand_in.pid, process_start_time(stand_in.pid))}, world._peer_gone).start()
        with open(pid_file + ".tmp", "w") as handle:
            handle.write(str(stand_in.pid))
        os.replace(pid_file + ".tmp", pid_file)
        if "--raise" in sys.argv:
            while world.watch.gone() is None:
                time.sleep(0.05)
            raise RuntimeError("an error after the peer vanished")
        wait_for_everyone()
    else:
        time.sleep(60)
        wait_for_everyone()
print(f"rank {world.rank}: the barrier ended: the watch did not act", flush=True)
