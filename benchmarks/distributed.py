"""Data-parallel scaling on this machine: training steps per second with K MPI processes x T threads.

    python benchmarks/distributed.py [--rounds 3] [--models lenet5,resnet20] [--nice -19] [--out FILE]
        [--configs blocking,alone] [--variant NAME:VAR=VALUE[,VAR=VALUE]]...
    python benchmarks/distributed.py reductions [--sizes 61706,270000] [--variant ...]... [--rounds 5]

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
- 2 processes x 1 thread, blocking: reductions after the whole backward pass (on one node: summed in shared
  memory, nbconv.shared_gradients, as MPIWorld does by default there);
- 2 processes x 1 thread, blocking, MPI Allreduce: the same through MPI_Allreduce (MPIWorld(shared=False));
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

--configs runs only some configurations (by their short names: 1x1, 1x2, overlap, blocking, balanced, alone,
ceiling; 1 x 1 and the ceiling always run, the ratios need them). Each --variant adds a set of environment
variables for the MPI jobs (MPICH's MPIR_CVAR_* settings, say): every round then runs one job per variant
(the defaults included, named "defaults"), in an order that rotates from round to round, and the table has
a row per variant and configuration.

`reductions` times MPI_Allreduce alone (in place, float32 sums, both processes released together by a
barrier, then one Allreduce each; each size in turn, one call at a time) in one `mpiexec -n 2` job per
variant and round, alternating: the median wall and CPU time per call by size and variant, and the median
over rounds of each variant's ratio to the defaults in the same round. Sizes in float32 values: 61,706 is
LeNet-5's gradient (one 246 KB bucket), 270,000 the ResNet-20-sized network's (1.08 MB, cut into buckets of
BUCKET_BYTES by the reducer).
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
    ("2 processes x 1 thread, blocking, MPI Allreduce", 2, 1, "shard", "allreduce"),
    ("2 processes x 1 thread, overlapped, shares balanced by speed", 2, 1, "shard", "balanced"),
    ("2 processes x 1 thread, no reduction (compute alone)", 2, 1, "shard", None),
    ("2 processes x 1 thread, whole batch each, no reduction (the machine's ceiling)", 2, 1, "all", None),
]
BASE, CEILING = CONFIGS[0][0], CONFIGS[-1][0]
SHORT_NAMES = ("1x1", "1x2", "overlap", "blocking", "allreduce", "balanced", "alone", "ceiling")  # CONFIGS', for --configs
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
    from nbconv.train import StepLoss, TrainConfig, make_optimizer

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
    shard = world.shard(images)
    # the loss as the training loop computes it (nbconv.train.StepLoss: labels checked once, the hits counted)
    step_loss, everyone = StepLoss(labels), np.arange(batch_size)
    mine = world.shard(everyone)
    # shares follow the processes' speeds, updated every 2 steps so that they settle within a short run
    balanced = distributed.MPIWorld(comm=comm, balance=True, balance_every=2)

    def step(config):
        label, processes, threads, share, reduction = config
        if processes == 1 and world.rank != 0:
            return
        numba.set_num_threads(threads)
        batch, chosen = (images, everyone) if share == "all" else (shard, mine)
        if reduction == "balanced":
            batch, chosen = balanced.shard(images), balanced.shard(everyone)
        loss, grad_logits, hits = step_loss(model.forward(batch), chosen)
        if reduction is None:
            model.backward(grad_logits, need_input_grad=False)
        else:
            reducing = balanced if reduction == "balanced" else world
            reducing.overlap = reduction not in ("blocking", "allreduce")
            reducing.shared = reduction != "allreduce" and world.local_size == world.size
            reducing.backward(model, grad_logits, len(batch), batch_size, totals=(loss * len(batch), hits))
            reducing.step_totals(loss * len(batch), hits)  # as the training loop does: reduced with the gradients
        optimizer.step()

    configs = selected(args.configs)
    for config in configs:  # warm-up: every kernel for both batch sizes loaded or compiled
        meet(comm)
        step(config)
        step(config)
    measured = {config[0]: [] for config in configs}
    for block in range(blocks):
        rotation = block % len(configs)
        for config in configs[rotation:] + configs[:rotation]:
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
        for config in configs:
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


def selected(names):
    """The CONFIGS named in `names` (comma-separated SHORT_NAMES; None: all), with 1 x 1 and the ceiling."""
    if not names:
        return list(CONFIGS)
    wanted = set(names.split(",")) | {"1x1", "ceiling"}
    unknown = wanted - set(SHORT_NAMES)
    if unknown:
        raise SystemExit(f"--configs: unknown {', '.join(sorted(unknown))}; expected some of {', '.join(SHORT_NAMES)}")
    return [config for config, short in zip(CONFIGS, SHORT_NAMES) if short in wanted]


def variants(args):
    """[(name, {variable: value})]: the defaults first, then each --variant NAME:VAR=VALUE[,VAR=VALUE]."""
    chosen = [("defaults", {})]
    for text in args.variant or ():
        name, _, settings = text.partition(":")
        pairs = [item.partition("=") for item in settings.split(",") if item]
        if not name or not pairs or any(not variable or not sep for variable, sep, _ in pairs):
            raise SystemExit(f"--variant {text!r}: expected NAME:VARIABLE=VALUE[,VARIABLE=VALUE]")
        chosen.append((name, {variable: value for variable, _, value in pairs}))
    return chosen


def in_rotation(items, round_number):
    """`items` starting at position round_number (mod len): each one leads in turn."""
    start = round_number % len(items)
    return items[start:] + items[:start]


def launcher():
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return [beside if os.access(beside, os.X_OK) else shutil.which("mpiexec"), "-n", "2", sys.executable]


def run(model, args, settings=None):
    command = launcher() + [os.path.abspath(__file__), "worker", "--model", model] + \
        (["--steps", str(args.steps)] if args.steps else []) + (["--blocks", str(args.blocks)] if args.blocks else []) + \
        (["--nice", str(args.nice)] if args.nice is not None else []) + \
        (["--configs", args.configs] if args.configs else [])
    env = dict(os.environ, NUMBA_NUM_THREADS="2", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               **(settings or {}))
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    if result.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def driver(args):
    rows, chosen = [], variants(args)
    for model in args.models.split(","):
        by_variant = {name: [] for name, _ in chosen}
        for round_number in range(args.rounds):
            for name, settings in in_rotation(chosen, round_number):
                by_variant[name].append(run(model, args, settings))
        for variant, rounds in by_variant.items():
            rows += table_rows(model if len(chosen) == 1 else f"{model}, {variant}", rounds, selected(args.configs))
    table = "\n".join(["| model | configuration | images/s (median) | range over rounds | step ms | CPU ms/step, "
                       "busiest process | vs 1 x 1 | vs 1 x 1, from CPU time | of the ceiling |",
                       "|---|---|---:|---:|---:|---:|---:|---:|---:|", *rows])
    print(table)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(table + "\n")


def table_rows(model, rounds, configs):
    """One table row per configuration, from the rounds' results of one model (and variant)."""
    rows = []
    print(f"{model}: {rounds[0]['weights']:,} weights", file=sys.stderr)

    def pooled(label, key):
        return [value for one in rounds for value in one[label][key]]

    def paired(label, over):  # per block: this configuration's rate / the other's in the same block
        return statistics.median(mine / theirs for one in rounds
                                 for mine, theirs in zip(one[label]["images_per_s"], one[over]["images_per_s"]))

    base_cpu = statistics.median(pooled(BASE, "cpu_ms"))
    for label, processes, threads, share, reduction in configs:
        medians = [statistics.median(one[label]["images_per_s"]) for one in rounds]
        cpu_ms = statistics.median(pooled(label, "cpu_ms"))
        rows.append(f"| {model} | {label} | {statistics.median(pooled(label, 'images_per_s')):,.0f} | "
                    f"{min(medians):,.0f}-{max(medians):,.0f} | {statistics.median(pooled(label, 'step_ms')):.1f} | "
                    f"{cpu_ms:.1f} | {paired(label, BASE):.2f}x | "
                    f"{base_cpu / cpu_ms * threads * (processes if share == 'all' else 1):.2f}x | "
                    f"{paired(label, CEILING):.0%} |")
    return rows


def reduction_worker(args):
    """One job of `reductions`: per size, the wall and CPU seconds of each of args.calls Allreduce calls."""
    import numpy as np

    from nbconv import distributed

    if args.nice is not None:
        raise_priority(args.nice)
    world = distributed.MPIWorld()
    comm, MPI = world.comm, world.MPI
    sizes = [int(size) for size in args.sizes.split(",")]
    buffers = {size: np.ones(size, np.float32) for size in sizes}
    times = {size: [] for size in sizes}
    for size in sizes:
        for call in range(args.calls + 10):  # the first 10: warm-up (buffers touched, MPICH's shared memory set up)
            comm.Barrier()
            started, cpu_started = time.perf_counter(), time.process_time()
            comm.Allreduce(MPI.IN_PLACE, buffers[size], op=MPI.SUM)
            if call >= 10:
                times[size].append((time.perf_counter() - started, time.process_time() - cpu_started))
            buffers[size][:] = 1  # the sums stay small whatever the number of calls
    everyone = comm.gather(times, root=0)
    if world.is_root:  # per call, the slower process's time
        print(json.dumps({size: [max(rank[size][call][0] for rank in everyone) for call in range(args.calls)]
                          for size in sizes} | {f"cpu {size}": [max(rank[size][call][1] for rank in everyone)
                                                               for call in range(args.calls)] for size in sizes}))


def reductions(args):
    """Allreduce alone, per size and variant, variants alternating from job to job (see the module's doc)."""
    chosen = variants(args)
    jobs = {name: [] for name, _ in chosen}
    for round_number in range(args.rounds):
        for name, settings in in_rotation(chosen, round_number):
            command = launcher() + [os.path.abspath(__file__), "reduction-worker", "--sizes", args.sizes,
                                    "--calls", str(args.calls)] + \
                (["--nice", str(args.nice)] if args.nice is not None else [])
            env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **settings)
            result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
            if result.returncode:
                raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
            jobs[name].append(json.loads(result.stdout.strip().splitlines()[-1]))
    sizes = args.sizes.split(",")
    rows = []
    for name, settings in chosen:
        for size in sizes:
            walls = [statistics.median(job[size]) for job in jobs[name]]
            cpus = [statistics.median(job[f"cpu {size}"]) for job in jobs[name]]
            ratios = [mine / theirs for mine, theirs in zip(walls, (statistics.median(job[size])
                                                                    for job in jobs["defaults"]))]
            rows.append(f"| {name} | {int(size) * 4 / 1e3:,.0f} KB | {1e3 * statistics.median(walls):.3f} | "
                        f"{1e3 * min(walls):.3f}-{1e3 * max(walls):.3f} | {1e3 * statistics.median(cpus):.3f} | "
                        f"{statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}] | "
                        f"{' '.join(f'{key}={value}' for key, value in settings.items()) or 'none'} |")
    print(f"MPI_Allreduce in place, float32 sum, 2 processes, {args.calls} calls per size and job, {args.rounds} "
          f"alternating jobs per variant; ms per call: median over jobs of each job's median [range over jobs]")
    print("| variant | size | ms per call | range over jobs | CPU ms, slower process | vs defaults, same round | "
          "settings |\n|---|---:|---:|---:|---:|---:|---|")
    print("\n".join(rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", default="driver",
                        choices=["driver", "worker", "reductions", "reduction-worker"])
    parser.add_argument("--models", default="lenet5,resnet20")
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="training steps per block")
    parser.add_argument("--blocks", type=int, default=None, help="blocks per configuration and round")
    parser.add_argument("--nice", type=int, default=None,
                        help="the workers' niceness, e.g. -19 on a machine shared with other work (root only)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--configs", default=None, help=f"some configurations only: {','.join(SHORT_NAMES)}")
    parser.add_argument("--variant", action="append", default=None, metavar="NAME:VARIABLE=VALUE[,VARIABLE=VALUE]",
                        help="environment settings for the MPI jobs, alternated with the defaults (repeatable)")
    parser.add_argument("--sizes", default="61706,270000", help="reductions: float32 values per Allreduce")
    parser.add_argument("--calls", type=int, default=300, help="reductions: Allreduce calls per size and job")
    args = parser.parse_args()
    {"worker": worker, "reductions": reductions, "reduction-worker": reduction_worker}.get(args.mode, driver)(args)


if __name__ == "__main__":
    main()
