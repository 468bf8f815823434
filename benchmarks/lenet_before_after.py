"""LeNet-5 with and without this round's changes, and PyTorch, in alternating rounds (RESULTS.md, "LeNet-5,
round two").

"before" is the same code with the plan's flat algorithm off (plan.FLAT_CHANNELS = 0) and, for whole
processes, the app started without nbconv.startup's SciPy skip; "now" is the code as it is.

Usage:
  python benchmarks/lenet_before_after.py epoch ROUNDS [--threads T] [--mnist DIR]   # whole processes
  python benchmarks/lenet_before_after.py step ROUNDS                                # one thread, in process
  python benchmarks/lenet_before_after.py cold ROUNDS [--mnist DIR]                  # empty JIT cache
Whole processes are timed in wall seconds and in CPU seconds (getrusage of the children, helpers included).
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BEFORE_APP = ("import sys; sys.argv = ['nbconv'] + sys.argv[1:]\n"
              "from nbconv.kernels.cpu.conv import plan\nplan.FLAT_CHANNELS = 0\n"
              "from nbconv_cli.main import app\napp()\n")


def timed_process(command, env):
    """(CPU seconds, wall seconds, last line of stdout) of one child process."""
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env, cwd=ROOT).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return cpu, time.perf_counter() - started, (out.strip().splitlines() or [""])[-1]


def spread(values):
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def epoch(rounds, threads, mnist):
    args = ["train", "lenet5", "--epochs", "1", "--threads", str(threads), "--data-dir", mnist, "--out",
            os.path.join(tempfile.mkdtemp(), "m.npz")]
    commands = {"before": [sys.executable, "-c", BEFORE_APP] + args,
                "now": [sys.executable, "-m", "nbconv"] + args,
                "torch": [sys.executable, os.path.join(HERE, "torch_lenet5.py"), mnist, "1"]}
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    results = {name: [] for name in commands}
    for round_ in range(rounds):
        for name, command in commands.items():
            cpu, wall, last = timed_process(command, env)
            results[name].append((cpu, wall))
            print(f"{round_} {name}: CPU {cpu:.2f} s, wall {wall:.2f} s; {last[-60:]}", flush=True)
    for name, values in results.items():
        print(f"{name}: CPU s {spread([v[0] for v in values])}, wall s {spread([v[1] for v in values])}")
    for name in ("before", "now"):
        pairs = list(zip(results["torch"], results[name]))
        print(f"PyTorch / {name}: CPU {spread([t[0] / o[0] for t, o in pairs])}, "
              f"wall {spread([t[1] / o[1] for t, o in pairs])}")


def step(rounds):
    import numba
    numba.set_num_threads(1)
    import numpy as np

    import nbconv.functional as F
    from nbconv import bench, models
    from nbconv.kernels.cpu.conv import plan
    from nbconv.train import TrainConfig, make_optimizer
    torch = bench.torch_module()
    rng = np.random.default_rng(0)
    model = models.build("lenet5", seed=0)
    optimizer = make_optimizer(TrainConfig(lr=0.01), model.parameters())
    x, labels = rng.standard_normal((64, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 64)

    def ours(flat_channels):
        plan.FLAT_CHANNELS = flat_channels
        model.train()
        _, grad = F.softmax_cross_entropy(model.forward(x), labels)
        model.backward(grad, need_input_grad=False)
        optimizer.step()

    functions = {"before": lambda: ours(0), "now": lambda: ours(8),
                 "torch": bench.torch_network_functions(torch, bench.torch_lenet5(torch))[0]}
    for function in functions.values():
        for _ in range(3):
            function()
    results = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            started = time.process_time()
            for _ in range(30):
                function()
            results[name].append((time.process_time() - started) / 30 * 1e3)
    for name, values in results.items():
        print(f"{name}: CPU ms a step {spread(values)}")
    for name in ("before", "now"):
        print(f"PyTorch / {name}: {spread([t / o for t, o in zip(results['torch'], results[name])])}")
    print(f"before / now: {spread([b / n for b, n in zip(results['before'], results['now'])])}")


def cold(rounds, mnist):
    args = ["train", "lenet5", "--epochs", "1", "--limit", "640", "--data-dir", mnist, "--out",
            os.path.join(tempfile.mkdtemp(), "m.npz")]
    commands = {"before": [sys.executable, "-c", BEFORE_APP] + args, "now": [sys.executable, "-m", "nbconv"] + args}
    for _ in range(rounds):
        for name, command in commands.items():
            env = {**os.environ, "NUMBA_CACHE_DIR": tempfile.mkdtemp(prefix="nbconv-cold-")}
            first, second = timed_process(command, env), timed_process(command, env)
            print(f"{name}: cold {first[1]:.1f} s wall, {first[0]:.1f} s CPU; warm {second[1]:.1f} s wall, "
                  f"{second[0]:.1f} s CPU; compiling {first[1] - second[1]:.1f} s wall, "
                  f"{first[0] - second[0]:.1f} s CPU", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("epoch", "step", "cold"))
    parser.add_argument("rounds", type=int)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mnist", default=os.environ.get("NBCONV_DATA_DIR", os.path.join(ROOT, "..", "shared",
                                                                                          "data", "mnist")))
    args = parser.parse_args()
    if args.what == "epoch":
        epoch(args.rounds, args.threads, args.mnist)
    elif args.what == "step":
        step(args.rounds)
    else:
        cold(args.rounds, args.mnist)


if __name__ == "__main__":
    main()
