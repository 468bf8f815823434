"""Data-parallel scaling on this machine: training steps per second with K MPI processes x T threads.

    python benchmarks/distributed.py [--rounds 3] [--models lenet5,resnet20] [--nice -19] [--out FILE]

Each round is one `mpiexec -n 2` job (`benchmarks/distributed.py worker`) that runs every configuration in
turn, in blocks of a few training steps, alternating them block after block (the configurations' order
rotates every block), so that all of them meet the same machine: on a machine whose speed drifts (other jobs,
a hypervisor moving the two vCPUs), separate runs per configuration measured differences of up to 1.4x that
came from the moment of the run, not from the configuration. Every block starts after a 50 ms rest (OpenMP's
idle threads spin for a while after the 2-thread configuration) and one untimed step (a process that sat out
the previous blocks starts with cold caches), and both processes meet before that step and before the timed
steps (waiting asleep, not polling), so that a block starts with both of them ready. The configurations:

- 1 process x 1 thread: rank 0 trains on the whole global batch, rank 1 sleeps;
- 1 process x 2 threads: the same with two Numba threads;
- 2 processes x 1 thread, overlapped: each process its half, gradients reduced while backward runs;
- 2 processes x 1 thread, blocking: reductions after the whole backward pass;
- 2 processes x 1 thread, overlapped, shares balanced by speed: MPIWorld(balance=True), each batch shared in
  proportion to the processes' measured speeds (updated every 2 steps here);
- 2 processes x 1 thread, no reduction (compute alone): each process its half, no communication at all;
- 2 processes x 1 thread, whole batch each, no reduction: what the two cores deliver together when both
  compute at once (the machine's ceiling for any parallel training: a pair of vCPUs that share a core or
  its caches and memory delivers less than twice one).

The table gives, per configuration, the median images/s over all blocks, the range over the rounds' medians,
the step time, the CPU time per step of the busiest process (process CPU time: it includes MPI's polling
while waiting for the partner), the speed-up against 1 x 1 (median over the blocks of the ratio to the 1 x 1
block next to it), and the share of the ceiling. Synthetic data (random images, fixed seed): the step's cost
does not depend on the pixels.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = {
    # name: (spec, input shape, global batch, steps per block, blocks per configuration and round)
    "lenet5": ("lenet5", (1, 28, 28), 64, 20, 6),
    # ResNet-20's convolutions (3x3; 16, 32, 64 channels; two stride-2 stages; 0.27 M weights) without the
    # shortcuts, which the spec language has no token for: the same arithmetic per image, near enough
    "resnet20": ("conv16k3p1,relu,[conv16k3p1,relu]*6,conv32k3s2p1,relu,[conv32k3p1,relu]*5,"
                 "conv64k3s2p1,relu,[conv64k3p1,relu]*5,gap,fc10", (3, 32, 32), 64, 2, 3),
}
# (label, processes that compute, threads per process, what each computes: "all" or "shard",
#  reduction: "overlap", "blocking" or None)
CONFIGS = [
    ("1 process x 1 thread", 1, 1, "all", None),
    ("1 process x 2 threads", 1, 2, "all", None),
    ("2 processes x 1 thread, overlapped", 2, 1, "shard", "overlap"),
    ("2 processes x 1 thread, blocking", 2, 1, "shard", "blocking"),
    ("2 processes x 1 thread, overlapped, shares balanced by speed", 2, 1, "shard", "balanced"),
    ("2 processes x 1 thread, no reduction (compute alone)", 2, 1, "shard", None),
    ("2 processes x 1 thread, whole batch each, no reduction (the machine's ceiling)", 2, 1, "all", None),
]
BASE, CEILING = CONFIGS[0][0], CONFIGS[-1][0]
# rest before each block: OpenMP's idle threads spin for milliseconds after the 2-thread configuration's last
# parallel loop (libgomp's GOMP_SPINCOUNT) and would slow down whatever block comes next
SETTLE_SECONDS = 0.05


def meet(comm, poll_seconds=0.0005):
    """A barrier that waits asleep: a process that is not computing must leave its core to the others."""
    request = comm.Ibarrier()
    while not request.Test():
        time.sleep(poll_seconds)


def raise_priority(nice):
    """Lower this process's niceness to `nice` (negative: more CPU than other jobs), also for its Linux autogroup:
    mpiexec starts each process in a session of its own, and the scheduler shares the cores between sessions
    first. Needs root (or CAP_SYS_NICE); a shared machine's other jobs still run, only less."""
    try:
        with open("/proc/self/autogroup", "w") as handle:
            handle.write(str(nice))
    except OSError:
        pass
    os.nice(nice - os.nice(0))


def worker(args):
    from nbconv import distributed

    if args.nice is not None:
        raise_priority(args.nice)
    world = distributed.MPIWorld()
    with world.guard():  # an error on one process ends the job instead of leaving the other one waiting
        measure(args, world)


def measure(args, world):
    import numba
    import numpy as np

    from nbconv import distributed, models
    from nbconv import functional as F
    from nbconv.train import TrainConfig, make_optimizer

    comm = world.comm
    if world.size != 2 or numba.config.NUMBA_NUM_THREADS < 2:
        raise ValueError("the worker runs under mpiexec -n 2 with NUMBA_NUM_THREADS=2 (the driver sets both)")
    spec, shape, batch_size, steps, blocks = MODELS[args.model]
    steps, blocks = args.steps or steps, args.blocks or blocks
    model = models.build(spec, input_shape=shape, seed=0)
    optimizer = make_optimizer(TrainConfig(model=spec), model.parameters())
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch_size, *shape)).astype(np.float32)
    labels = rng.integers(0, 10, batch_size)
    shard, shard_labels = world.shard(images), world.shard(labels)
    # shares follow the processes' speeds, updated every 2 steps so that they settle within a short run
    balanced = distributed.MPIWorld(comm=comm, balance=True, balance_every=2)

    def step(config):
        label, processes, threads, share, reduction = config
        if processes == 1 and world.rank != 0:
            return
        numba.set_num_threads(threads)
        batch, batch_labels = (images, labels) if share == "all" else (shard, shard_labels)
        if reduction == "balanced":
            batch, batch_labels = balanced.shard(images), balanced.shard(labels)
        loss, grad_logits = F.softmax_cross_entropy(model.forward(batch), batch_labels)
        if reduction is None:
            model.backward(grad_logits, need_input_grad=False)
        else:
            reducing = balanced if reduction == "balanced" else world
            reducing.overlap = reduction != "blocking"
            reducing.backward(model, grad_logits, len(batch), batch_size, totals=(loss * len(batch), 0))
            reducing.step_totals(loss * len(batch), 0)  # as the training loop does: reduced with the gradients
        optimizer.step()

    for config in CONFIGS:  # warm-up: every kernel for both batch sizes loaded or compiled
        meet(comm)
        step(config)
        step(config)
    measured = {config[0]: [] for config in CONFIGS}
    for block in range(blocks):
        rotation = block % len(CONFIGS)
        for config in CONFIGS[rotation:] + CONFIGS[:rotation]:
            time.sleep(SETTLE_SECONDS)
            meet(comm)
            step(config)  # untimed: the process that sat out the last blocks finds its caches cold
            meet(comm)
            started, cpu_started = time.perf_counter(), time.process_time()
            for _ in range(steps):
                step(config)
            measured[config[0]].append((time.perf_counter() - started, time.process_time() - cpu_started))
    everyone = comm.gather(measured, root=0)
    if world.is_root:
        result = {}
        for config in CONFIGS:
            label, processes = config[0], config[1]
            ranks = everyone[:processes]
            walls = [max(rank[label][block][0] for rank in ranks) for block in range(blocks)]
            cpus = [max(rank[label][block][1] for rank in ranks) for block in range(blocks)]
            images_per_block = batch_size * steps * (2 if config[3] == "all" and processes == 2 else 1)
            result[label] = {"images_per_s": [images_per_block / wall for wall in walls],
                             "step_ms": [1e3 * wall / steps for wall in walls],
                             "cpu_ms": [1e3 * cpu / steps for cpu in cpus]}
        result["weights"] = sum(p.value.size for p in model.parameters())
        print(json.dumps(result))


def launcher():
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return [beside if os.access(beside, os.X_OK) else shutil.which("mpiexec"), "-n", "2", sys.executable]


def run(model, args):
    command = launcher() + [os.path.abspath(__file__), "worker", "--model", model] + \
        (["--steps", str(args.steps)] if args.steps else []) + (["--blocks", str(args.blocks)] if args.blocks else []) + \
        (["--nice", str(args.nice)] if args.nice is not None else [])
    env = dict(os.environ, NUMBA_NUM_THREADS="2", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    if result.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def driver(args):
    rows = []
    for model in args.models.split(","):
        rounds = [run(model, args) for _ in range(args.rounds)]
        print(f"{model}: {rounds[0]['weights']:,} weights", file=sys.stderr)

        def pooled(label, key):
            return [value for one in rounds for value in one[label][key]]

        def paired(label, over):  # per block: this configuration's rate / the other's in the same block
            return statistics.median(mine / theirs for one in rounds
                                     for mine, theirs in zip(one[label]["images_per_s"], one[over]["images_per_s"]))

        base_cpu = statistics.median(pooled(BASE, "cpu_ms"))
        for label, processes, threads, share, reduction in CONFIGS:
            medians = [statistics.median(one[label]["images_per_s"]) for one in rounds]
            cpu_ms = statistics.median(pooled(label, "cpu_ms"))
            rows.append(f"| {model} | {label} | {statistics.median(pooled(label, 'images_per_s')):,.0f} | "
                        f"{min(medians):,.0f}-{max(medians):,.0f} | {statistics.median(pooled(label, 'step_ms')):.1f} | "
                        f"{cpu_ms:.1f} | {paired(label, BASE):.2f}x | "
                        f"{base_cpu / cpu_ms * threads * (processes if share == 'all' else 1):.2f}x | "
                        f"{paired(label, CEILING):.0%} |")
    table = "\n".join(["| model | configuration | images/s (median) | range over rounds | step ms | CPU ms/step, "
                       "busiest process | vs 1 x 1 | vs 1 x 1, from CPU time | of the ceiling |",
                       "|---|---|---:|---:|---:|---:|---:|---:|---:|", *rows])
    print(table)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(table + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", default="driver", choices=["driver", "worker"])
    parser.add_argument("--models", default="lenet5,resnet20")
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="training steps per block")
    parser.add_argument("--blocks", type=int, default=None, help="blocks per configuration and round")
    parser.add_argument("--nice", type=int, default=None,
                        help="the workers' niceness, e.g. -19 on a machine shared with other work (root only)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    (worker if args.mode == "worker" else driver)(args)


if __name__ == "__main__":
    main()
