"""LeNet-5's second layer and training step with and without the strips algorithm, and PyTorch, in
alternating rounds (RESULTS.md, "LeNet-5, round three").

"before" is the same code with strips off (plan.STRIPS_WASTE = inf: wide runs every pass, as before);
"now" is the code as it is. With one thread, CPU milliseconds of this process (a loaded machine inflates
them less than wall time); with more, wall milliseconds. The median [min-max] over the rounds, each round
the best of `--calls` calls.

Usage: python benchmarks/lenet_strips.py {layer,step} ROUNDS [--threads T] [--calls K]
"""
import argparse
import statistics
import time


def spread(values):
    return f"{statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}]"


def layer_functions(torch):
    """conv2 (64 x 6 x 14 x 14 -> 16, 5x5) forward + both gradients, through nbconv.functional and PyTorch."""
    import numpy as np

    import nbconv.functional as F
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 6, 14, 14)).astype(np.float32)
    w = rng.standard_normal((16, 6, 5, 5)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    grad_y = rng.standard_normal((64, 16, 10, 10)).astype(np.float32)

    def ours():
        F.conv2d(x, w, b)
        F.conv2d_backward(grad_y, x, w)

    tx, tw, tb = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
    t_grad = torch.from_numpy(grad_y)

    def theirs():
        torch.nn.functional.conv2d(tx, tw, tb).backward(t_grad)

    return ours, theirs


def step_functions(torch):
    """A LeNet-5 training step (batch 64, SGD), nbconv and PyTorch."""
    import numpy as np

    import nbconv.functional as F
    from nbconv import bench, models
    from nbconv.train import TrainConfig, make_optimizer
    rng = np.random.default_rng(0)
    model = models.build("lenet5", seed=0)
    optimizer = make_optimizer(TrainConfig(lr=0.01), model.parameters())
    x, labels = rng.standard_normal((64, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 64)

    def ours():
        model.train()
        _, grad = F.softmax_cross_entropy(model.forward(x), labels)
        model.backward(grad, need_input_grad=False)
        optimizer.step()

    return ours, bench.torch_network_functions(torch, bench.torch_lenet5(torch))[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("layer", "step"))
    parser.add_argument("rounds", type=int)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calls", type=int, default=10)
    args = parser.parse_args()
    import numba
    numba.set_num_threads(args.threads)
    from nbconv import bench
    from nbconv.kernels.cpu.conv import plan
    torch = bench.torch_module()
    torch.set_num_threads(args.threads)
    ours, theirs = (layer_functions if args.what == "layer" else step_functions)(torch)
    waste = plan.STRIPS_WASTE

    def with_waste(value):
        def run():
            plan.STRIPS_WASTE = value
            ours()
        return run

    functions = {"before": with_waste(float("inf")), "now": with_waste(waste), "torch": theirs}
    for function in functions.values():
        for _ in range(3):
            function()
    results = {name: [] for name in functions}
    clock, unit = (time.process_time, "CPU") if args.threads == 1 else (time.perf_counter, "wall")
    for _ in range(args.rounds):
        for name, function in functions.items():
            best = float("inf")
            for _ in range(args.calls):
                started = clock()
                function()
                best = min(best, clock() - started)
            results[name].append(best * 1e3)
    print(f"{args.what}, {args.threads} thread(s), {unit} ms, best of {args.calls} calls a round, {args.rounds} rounds")
    for name, values in results.items():
        print(f"{name}: {spread(values)} ms")
    for name in ("before", "now"):
        print(f"PyTorch / {name}: {spread([t / o for t, o in zip(results['torch'], results[name])])}")
    print(f"before / now: {spread([b / n for b, n in zip(results['before'], results['now'])])}")


if __name__ == "__main__":
    main()
