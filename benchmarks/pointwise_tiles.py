"""1x1 stride-1 convolutions by 'pointwise_tiles' against 'pointwise' (BLAS), in alternating rounds in one process.

    python benchmarks/pointwise_tiles.py [--threads 1] [--rounds 9] [--shapes N,C,H,W,D ...]
    python benchmarks/pointwise_tiles.py --layer [--rounds 15] [--shapes 16,256,28,28,64]

Per pass (forward, input gradient), each algorithm forced through the plan, wall time (thread CPU time at one
thread): GFLOP/s and the ratio BLAS time / tiles time. With --layer, the layer set's forward+backward through
nbconv.functional with plan.POINTWISE_TILES on and off, and PyTorch's, in the same rounds.
"""
import argparse
import statistics
import time

import numba
import numpy as np

import nbconv.functional as F
from nbconv.kernels.cpu.conv import dispatch
from nbconv.kernels.cpu.conv import plan as planning

SHAPES = ("16,256,28,28,64", "16,64,28,28,256", "8,256,56,56,64", "8,64,56,56,256", "8,512,28,28,128",
          "8,1024,14,14,256", "1,256,56,56,64", "1,64,56,56,256", "1,1024,14,14,256")


def alternate(functions, rounds, clock, calls=3, pause=0.0):
    """{name: median over the rounds of the best of `calls` calls}, the order reversed every other round."""
    times = {name: [] for name in functions}
    for round_ in range(rounds):
        for name, function in (list(functions.items())[::-1] if round_ % 2 else functions.items()):
            time.sleep(pause)
            samples = []
            for _ in range(calls):
                start = clock()
                function()
                samples.append(clock() - start)
            times[name].append(min(samples))
    return {name: statistics.median(values) for name, values in times.items()}, times


def passes(shape, rounds, clock):
    N, C, H, W, D = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = (rng.standard_normal((D, C, 1, 1)) * 0.1).astype(np.float32)
    b = rng.standard_normal(D).astype(np.float32)
    grad_y = rng.standard_normal((N, D, H, W)).astype(np.float32)
    out, grad_x = np.empty((N, D, H, W), np.float32), np.empty_like(x)
    parts = []
    for pass_ in ("forward", "backward_input"):
        functions = {}
        for algorithm in ("pointwise", "pointwise_tiles"):
            chosen = planning.plan(pass_, x.shape, w.shape, algorithm=algorithm)
            if pass_ == "forward":
                functions[algorithm] = lambda chosen=chosen: dispatch.run_forward(chosen, x, w, b, out)
            else:
                functions[algorithm] = lambda chosen=chosen: dispatch.run_backward_input(chosen, grad_y, w, grad_x)
            functions[algorithm]()
        median, _ = alternate(functions, rounds, clock)
        flops = 2 * N * C * D * H * W
        parts.append(f"{pass_} BLAS {flops / median['pointwise'] / 1e9:.0f} tiles "
                     f"{flops / median['pointwise_tiles'] / 1e9:.0f} GFLOP/s "
                     f"({median['pointwise'] / median['pointwise_tiles']:.2f}x)")
    return "; ".join(parts)


def layer(shape, rounds):
    import torch
    N, C, H, W, D = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = (rng.standard_normal((D, C, 1, 1)) * 0.1).astype(np.float32)
    b = np.zeros(D, np.float32)
    grad_y = rng.standard_normal((N, D, H, W)).astype(np.float32)
    tx, tw, tb = (torch.from_numpy(a).requires_grad_(True) for a in (x, w, b))
    tg = torch.from_numpy(grad_y)

    def ours(on):
        planning.POINTWISE_TILES = on
        F.conv2d(x, w, b)
        F.conv2d_backward(grad_y, x, w)

    functions = {"tiles": lambda: ours(True), "BLAS": lambda: ours(False),
                 "torch": lambda: torch.nn.functional.conv2d(tx, tw, tb).backward(tg)}
    for function in functions.values():
        function()
    median, times = alternate(functions, rounds, time.perf_counter, calls=5, pause=0.02)
    planning.POINTWISE_TILES = True
    per_round = [blas / tiles for tiles, blas in zip(times["tiles"], times["BLAS"])]
    return (f"tiles {1e3 * median['tiles']:.2f} ms, BLAS {1e3 * median['BLAS']:.2f}, PyTorch "
            f"{1e3 * median['torch']:.2f}: PyTorch / tiles {median['torch'] / median['tiles']:.2f}x, PyTorch / BLAS "
            f"{median['torch'] / median['BLAS']:.2f}x; BLAS / tiles per round {statistics.median(per_round):.3f} "
            f"[{min(per_round):.2f}-{max(per_round):.2f}]")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--shapes", nargs="+", default=None, help="N,C,H,W,D each")
    parser.add_argument("--layer", action="store_true", help="the whole layer, the setting on and off, and PyTorch")
    arguments = parser.parse_args()
    if arguments.threads:
        numba.set_num_threads(arguments.threads)
    shapes = arguments.shapes or (["16,256,28,28,64"] if arguments.layer else SHAPES)
    for text in shapes:
        shape = tuple(int(value) for value in text.split(","))
        if arguments.layer:
            result = layer(shape, arguments.rounds or 15)
        else:
            clock = time.thread_time if numba.get_num_threads() == 1 else time.perf_counter
            result = passes(shape, arguments.rounds or 9, clock)
        print(f"{numba.get_num_threads()} thread(s), {shape}: {result}", flush=True)


if __name__ == "__main__":
    main()
