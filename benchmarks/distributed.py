"""Data-parallel scaling on this machine: training steps per second with K MPI processes x T threads.

    python benchmarks/distributed.py [--rounds 3] [--models lenet5,resnet20] [--out FILE]

runs, for each model, 1 process x 1 thread, 1 process x 2 threads, 2 processes x 1 thread (gradient
reductions overlapping backward), 2 processes x 1 thread (blocking reductions after backward) and
2 processes x 1 thread computing their shards without any reduction (not training: the compute alone), one
after the other in alternating rounds (the machine's load drifts; alternating spreads the drift over
every configuration), and prints a markdown table: median images/s, the range over the rounds, and the
ratio to one single-threaded process; also each configuration's CPU time per step in its busiest process
and the speed-up that CPU time implies on cores of its own (1x1's CPU time / this CPU time x threads per
process), which the other processes sharing the machine disturb far less than wall-clock time. Synthetic data (random images, fixed seed): the step's cost does not
depend on the pixels. Each run is `mpiexec -n K python benchmarks/distributed.py worker ...`.
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
    # name: (spec, input shape, global batch, timed steps)
    "lenet5": ("lenet5", (1, 28, 28), 64, 40),
    # ResNet-20's convolutions (3x3; 16, 32, 64 channels; two stride-2 stages; 0.27 M weights) without the
    # shortcuts, which the spec language has no token for: the same arithmetic per image, near enough
    "resnet20": ("conv16k3p1,relu,[conv16k3p1,relu]*6,conv32k3s2p1,relu,[conv32k3p1,relu]*5,"
                 "conv64k3s2p1,relu,[conv64k3p1,relu]*5,gap,fc10", (3, 32, 32), 64, 4),
}
CONFIGS = [  # (label, processes, threads per process, overlap: True, False or None for no reduction at all)
    ("1 process x 1 thread", 1, 1, True),
    ("1 process x 2 threads", 1, 2, True),
    ("2 processes x 1 thread, overlapped", 2, 1, True),
    ("2 processes x 1 thread, blocking", 2, 1, False),
    ("2 processes x 1 thread, no reduction (compute alone)", 2, 1, None),
]


def worker(args):
    import numba
    import numpy as np

    from nbconv import distributed, models
    from nbconv import functional as F
    from nbconv.train import TrainConfig, make_optimizer

    numba.set_num_threads(args.threads)
    world = distributed.MPIWorld(overlap=not args.blocking) if args.processes > 1 else distributed.SINGLE
    spec, shape, batch_size, steps = MODELS[args.model]
    steps = args.steps or steps
    model = models.build(spec, input_shape=shape, seed=0)
    optimizer = make_optimizer(TrainConfig(model=spec), model.parameters())
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch_size, *shape)).astype(np.float32)
    labels = rng.integers(0, 10, batch_size)
    mine, my_labels = world.shard(images), world.shard(labels)
    timings, cpu = [], []
    for step in range(args.warmup + steps):
        started, cpu_started = time.perf_counter(), time.process_time()
        logits = model.forward(mine)
        loss, grad_logits = F.softmax_cross_entropy(logits, my_labels)
        if args.no_reduction:  # the shard's compute alone, to tell it from the reductions' cost
            model.backward(grad_logits, need_input_grad=False)
        else:
            world.backward(model, grad_logits, len(mine), batch_size)
            world.step_totals(loss * len(mine), 0)
        optimizer.step()
        timings.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    timed = timings[args.warmup:]
    slowest = world.comm.allreduce(sum(timed), op=world.MPI.MAX) if world.distributed else sum(timed)
    busiest = sum(cpu[args.warmup:])
    busiest = world.comm.allreduce(busiest, op=world.MPI.MAX) if world.distributed else busiest
    if world.is_root:
        weights = sum(p.value.size for p in model.parameters())
        print(json.dumps({"images_per_s": batch_size * len(timed) / slowest, "step_ms": 1e3 * slowest / len(timed),
                          "cpu_ms": 1e3 * busiest / len(timed), "weights": weights}))


def launcher(processes):
    if processes == 1:
        return [sys.executable]
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return [beside if os.access(beside, os.X_OK) else shutil.which("mpiexec"), "-n", str(processes), sys.executable]


def run(model, processes, threads, overlap, steps):
    command = launcher(processes) + [os.path.abspath(__file__), "worker", "--model", model, "--threads", str(threads),
                                     "--processes", str(processes)] + \
        {True: [], False: ["--blocking"], None: ["--no-reduction"]}[overlap] + (["--steps", str(steps)] if steps else [])
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), PYTHONPATH=ROOT)
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    if result.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def driver(args):
    rows = []
    for model in args.models.split(","):
        measured = {label: [] for label, *_ in CONFIGS}
        for _ in range(args.rounds):
            for label, processes, threads, overlap in CONFIGS:
                measured[label].append(run(model, processes, threads, overlap, args.steps))
        base = statistics.median(r["images_per_s"] for r in measured[CONFIGS[0][0]])
        base_cpu = statistics.median(r["cpu_ms"] for r in measured[CONFIGS[0][0]])
        for label, processes, threads, overlap in CONFIGS:
            rates = [r["images_per_s"] for r in measured[label]]
            median = statistics.median(rates)
            cpu_ms = statistics.median(r["cpu_ms"] for r in measured[label])
            rows.append(f"| {model} | {label} | {median:,.0f} | {min(rates):,.0f}-{max(rates):,.0f} | "
                        f"{statistics.median(r['step_ms'] for r in measured[label]):.1f} | {cpu_ms:.1f} | "
                        f"{median / base:.2f}x | {base_cpu / cpu_ms * threads:.2f}x |")
        print(f"{model}: {measured[CONFIGS[0][0]][0]['weights']:,} weights", file=sys.stderr)
    table = "\n".join(["| model | configuration | images/s (median) | range over rounds | step ms | CPU ms/step, "
                       "busiest process | vs 1 x 1 | vs 1 x 1, from CPU time |", "|---|---|---:|---:|---:|---:|---:|---:|",
                       *rows])
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
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--blocking", action="store_true")
    parser.add_argument("--no-reduction", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    (worker if args.mode == "worker" else driver)(args)


if __name__ == "__main__":
    main()
