"""Where a 2-process training step's time goes, step by step on each process: compute, wait, sum, optimizer.

    python benchmarks/distributed_phases.py [--model lenet5] [--rounds 3] [--steps 20] [--blocks 10] [--nice -19]

Each round is one `mpiexec -n 2` job that alternates blocks of training steps summing the gradients in shared
memory (nbconv.shared_gradients: each layer summed as soon as both processes are done with it, or every
layer after backward) and through MPI_Allreduce (MPIWorld(shared=False)), all blocking (no overlap), on half of a global batch each (synthetic data). Every step records, on each process, the
monotonic clock (one clock for both processes of a machine) at the step's start, at the end of its
backward pass, at the end of the world's backward (the gradients summed) and after the optimizer. From
them, per step and process: compute (forward, loss and backward), wait (until the later process's backward
ended: the reduction cannot finish before), sum (from then to this process's end of the reduction),
optimizer, and the whole step. The table: per path, the median and p90 over steps and both processes of
each phase, in ms (and the mean: a synchronous step pays the wait's mean); "slow steps" are steps over 1.5x the path's median step.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from distributed import MODELS, ROOT, launcher, meet, raise_priority  # noqa: E402

PATHS = ("shared memory", "shared memory, summed after backward", "MPI Allreduce")


def worker(args):
    import numba
    import numpy as np

    from nbconv import distributed, models
    from nbconv.train import StepLoss, TrainConfig, make_optimizer

    if args.nice is not None:
        raise_priority(args.nice)
    numba.set_num_threads(1)
    world = distributed.MPIWorld(overlap=False)
    with world.guard():
        spec, shape, batch_size, _, _ = MODELS[args.model]
        model = models.build(spec, input_shape=shape, seed=0)
        optimizer = make_optimizer(TrainConfig(model=spec), model.parameters())
        rng = np.random.default_rng(0)
        images = rng.standard_normal((batch_size, *shape)).astype(np.float32)
        labels = rng.integers(0, 10, batch_size)
        step_loss, everyone = StepLoss(labels), np.arange(batch_size)
        shard, mine = world.shard(images), world.shard(everyone)
        marks = []
        backward = model.backward

        def timed_backward(*a, **k):
            result = backward(*a, **k)
            marks.append(time.perf_counter())
            return result
        model.backward = timed_backward

        def step():
            started = time.perf_counter()
            loss, grad_logits, hits = step_loss(model.forward(shard), mine)
            world.backward(model, grad_logits, len(shard), batch_size, totals=(loss * len(shard), hits))
            reduced = time.perf_counter()
            world.step_totals(loss * len(shard), hits)
            optimizer.step()
            return started, marks.pop(), reduced, time.perf_counter()

        records = {path: [] for path in PATHS}
        for block in range(args.blocks + 1):  # the first block (every path once) warms up
            for path in PATHS[block % len(PATHS):] + PATHS[:block % len(PATHS)]:
                world.shared = path != "MPI Allreduce"
                world.sum_during_backward = path == "shared memory"
                time.sleep(0.05)
                meet(world.comm)
                step()
                meet(world.comm)
                steps = [step() for _ in range(args.steps)]
                if block >= 1:
                    records[path].extend(steps)
        everyone = world.comm.gather(records, root=0)
        if world.is_root:
            print(json.dumps(everyone))


def phases(ranks, path):
    """{phase: [ms per step and process]} from both processes' marks of one path, and per process its waits."""
    out = {"compute": [], "wait": [], "sum": [], "optimizer": [], "step": []}
    waits = [[] for _ in ranks]
    for steps in zip(*(rank[path] for rank in ranks)):
        latest_backward = max(marks[1] for marks in steps)
        for rank, (started, backward_done, reduced, stepped) in enumerate(steps):
            out["compute"].append(backward_done - started)
            out["wait"].append(latest_backward - backward_done)
            out["sum"].append(reduced - latest_backward)
            out["optimizer"].append(stepped - reduced)
            out["step"].append(stepped - started)
            waits[rank].append(1e3 * (latest_backward - backward_done))
    return {name: [1e3 * value for value in values] for name, values in out.items()}, waits


def driver(args):
    jobs = []
    for _ in range(args.rounds):
        command = launcher() + [os.path.abspath(__file__), "worker", "--model", args.model, "--steps",
                                str(args.steps), "--blocks", str(args.blocks)] + \
            (["--nice", str(args.nice)] if args.nice is not None else [])
        env = dict(os.environ, NUMBA_NUM_THREADS="1", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
        if result.returncode:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
        jobs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    print(f"{args.model}, 2 processes x 1 thread, {args.rounds} jobs x {args.blocks} blocks x {args.steps} steps per "
          f"path; ms per step and process: mean / median [p90]")
    print("| path | compute | wait | sum | optimizer | step | slow steps | mean wait, rank 0 / 1 | "
          "step median by job |\n|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for path in PATHS:
        pooled = {}
        waits = [[] for _ in range(2)]
        for job in jobs:
            measured, by_rank = phases(job, path)
            for name, values in measured.items():
                pooled.setdefault(name, []).extend(values)
            for mine, values in zip(waits, by_rank):
                mine.extend(values)
        cells = [f"{statistics.mean(values):.3f} / {statistics.median(values):.3f} "
                 f"[{sorted(values)[int(0.9 * len(values))]:.3f}]" for name, values in pooled.items()]
        median_step = statistics.median(pooled["step"])
        slow = sum(value > 1.5 * median_step for value in pooled["step"]) / len(pooled["step"])
        by_job = " ".join(f"{statistics.median(phases(job, path)[0]['step']):.2f}" for job in jobs)
        by_rank = " / ".join(f"{statistics.mean(values):.3f}" for values in waits)
        print(f"| {path} | {' | '.join(cells)} | {slow:.0%} | {by_rank} | {by_job} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", default="driver", choices=["driver", "worker"])
    parser.add_argument("--model", default="lenet5", choices=sorted(MODELS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--nice", type=int, default=None)
    args = parser.parse_args()
    (worker if args.mode == "worker" else driver)(args)


if __name__ == "__main__":
    main()
