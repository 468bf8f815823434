"""Data-parallel training over MPI on the machine's GPUs (or its CPU cores): is it right, and what does it cost.

    python benchmarks/gpu_distributed.py [--device cuda|cpu] [--processes 2] [--rounds 2] [--out DIR]

Needs mpi4py and an MPI (the `mpi` extra), and for `--device cuda` a usable CUDA GPU. It:

1. (cuda) checks on the real device that gradients summed over the processes equal one process's gradients
   of the whole batch: `tests/distributed_device.py`, which the test suite runs under the CUDA simulator,
   here with NUMBA_ENABLE_CUDASIM=0, through host staging buffers and, when the MPI says it is CUDA-aware,
   straight from device memory;
2. times training steps of LeNet-5 and ResNet-20 (3x32x32), global batch 128, one process against N
   processes, in one `mpiexec -n N` job per round whose configurations alternate block by block: N processes
   reducing after backward (blocking), reducing while backward runs (overlapped), and not reducing at all
   (compute alone: the ceiling for any reduction scheme). Processes take the GPUs round robin by local rank,
   so on a machine with one GPU they share it: what is measured there is the cost of staging and reducing,
   not scaling. On `--device cpu` each process runs one thread.

`--out DIR` writes the table (table.md) and the check's report (check.json) there.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from distributed import meet  # noqa: E402  (a barrier that waits asleep)

MODELS = {"lenet5": (1, 28, 28), "resnet20": (3, 32, 32)}
GLOBAL_BATCH = 128
STEPS = {"lenet5": 20, "resnet20": 5}  # timed steps per block
BLOCKS = 4  # blocks per configuration and round


def configurations(processes):
    """(label, processes that compute, each computes "all" or its "shard", reduction or None)."""
    return [("1 process", 1, "all", None),
            (f"{processes} processes, blocking", processes, "shard", "blocking"),
            (f"{processes} processes, overlapped", processes, "shard", "overlap"),
            (f"{processes} processes, no reduction", processes, "shard", None)]


def worker(args):
    from nbconv import distributed
    world = distributed.MPIWorld()
    with world.guard():
        measure(args, world)


def measure(args, world):
    import numba
    import numpy as np

    from nbconv import backend, distributed, models
    from nbconv import functional as F
    from nbconv.train import TrainConfig, make_optimizer

    if args.device == "cuda":
        distributed.select_local_device(world)
    else:
        numba.set_num_threads(1)
    synchronize = _synchronizer(args.device)
    shape = MODELS[args.model]
    model = models.build(args.model, input_shape=shape, num_classes=10, seed=0).to(args.device)
    optimizer = make_optimizer(TrainConfig(model=args.model), model.parameters())
    rng = np.random.default_rng(0)
    images = rng.standard_normal((GLOBAL_BATCH, *shape)).astype(np.float32)
    labels = rng.integers(0, 10, GLOBAL_BATCH)
    place = backend.to_device if args.device == "cuda" else (lambda array: array)
    whole = place(images), place(labels)
    shard = place(world.shard(images)), place(world.shard(labels))
    configs = configurations(world.size)

    def step(config):
        label, processes, share, reduction = config
        if processes == 1 and world.rank != 0:
            return
        batch, batch_labels = whole if share == "all" else shard
        model.train()
        loss, grad_logits = F.softmax_cross_entropy(model.forward(batch), batch_labels)
        if reduction is None:
            model.backward(grad_logits, need_input_grad=False)
        else:
            world.overlap = reduction == "overlap"
            world.backward(model, grad_logits, len(batch), GLOBAL_BATCH)
            world.step_totals(float(loss) * len(batch), 0)
        optimizer.step()

    for config in configs:  # warm-up: every kernel compiled or loaded for both batch sizes
        meet(world.comm)
        step(config)
        step(config)
        synchronize()
    steps = args.steps or STEPS[args.model]
    measured = {config[0]: [] for config in configs}
    for block in range(args.blocks):
        rotation = block % len(configs)
        for config in configs[rotation:] + configs[:rotation]:
            meet(world.comm)
            step(config)
            synchronize()
            meet(world.comm)
            started = time.perf_counter()
            for _ in range(steps):
                step(config)
            synchronize()
            measured[config[0]].append(time.perf_counter() - started)
    everyone = world.comm.gather(measured, root=0)
    if world.is_root:
        result = {}
        for label, processes, share, reduction in configs:
            walls = [max(rank[label][block] for rank in everyone[:processes]) for block in range(args.blocks)]
            result[label] = [GLOBAL_BATCH * steps / wall for wall in walls]
        print(json.dumps(result))


def _synchronizer(device):
    if device != "cuda":
        return lambda: None
    from numba import cuda
    return cuda.synchronize


def launcher(processes):
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return [beside if os.access(beside, os.X_OK) else shutil.which("mpiexec"), "-n", str(processes), sys.executable]


def environment(device):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if device == "cpu":
        env["NUMBA_NUM_THREADS"] = "1"
    return env


def check_device_gradients(processes):
    """Run tests/distributed_device.py on the real GPU, staged and (where the MPI can) from device memory."""
    from nbconv import distributed
    reports = {}
    for cuda_aware in (["0", "1"] if distributed.cuda_aware_mpi() else ["0"]):
        with tempfile.TemporaryDirectory() as scratch:
            out = os.path.join(scratch, "device.json")
            env = dict(environment("cuda"), NUMBA_ENABLE_CUDASIM="0", NBCONV_MPI_CUDA_AWARE=cuda_aware)
            command = launcher(processes) + [os.path.join(ROOT, "tests", "distributed_device.py"), out]
            result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
            if result.returncode:
                reports[cuda_aware] = {"failed": result.stdout[-2000:] + result.stderr[-2000:]}
                continue
            with open(out) as handle:
                reports[cuda_aware] = json.load(handle)
    return reports


def run(model, args):
    command = launcher(args.processes) + [os.path.abspath(__file__), "worker", "--model", model,
                                          "--device", args.device, "--blocks", str(args.blocks)] + \
        (["--steps", str(args.steps)] if args.steps else [])
    result = subprocess.run(command, capture_output=True, text=True, env=environment(args.device), timeout=1800)
    if result.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def table(args):
    rows = []
    for model in args.models.split(","):
        rounds = [run(model, args) for _ in range(args.rounds)]
        base = "1 process"
        for label, *_ in configurations(args.processes):
            pooled = [value for one in rounds for value in one[label]]
            ratios = [mine / theirs for one in rounds for mine, theirs in zip(one[label], one[base])]
            rows.append(f"| {model} | {label} | {statistics.median(pooled):,.0f} | {min(pooled):,.0f}-{max(pooled):,.0f} | "
                        f"{statistics.median(ratios):.2f}x |")
    return "\n".join(["| model | configuration | images/s (median) | range over blocks | vs 1 process |",
                      "|---|---|---:|---:|---:|", *rows])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", default="driver", choices=["driver", "worker"])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--models", default="lenet5,resnet20")
    parser.add_argument("--model", default="lenet5", choices=sorted(MODELS))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--blocks", type=int, default=BLOCKS)
    parser.add_argument("--steps", type=int, default=None, help="timed training steps per block")
    parser.add_argument("--out", default=None, metavar="DIR")
    args = parser.parse_args()
    if args.mode == "worker":
        return worker(args)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
    if args.device == "cuda":
        check = check_device_gradients(args.processes)
        print(json.dumps(check), flush=True)
        if args.out:
            with open(os.path.join(args.out, "check.json"), "w") as handle:
                json.dump(check, handle)
    text = table(args)
    print(text)
    if args.out:
        with open(os.path.join(args.out, f"table-{args.device}-{args.processes}.md"), "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
