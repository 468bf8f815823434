"""What the per-layer benchmarks (winograd4_layers.py, blocked_layers.py, pointwise_*.py) share:
their common options, the threads and clock those set, one pass of a convolution (through the plan, or
PyTorch's) as a function of no arguments, the mean time of a few calls, and rounds that alternate contenders.
"""
import time

import numba
import numpy as np

from nbconv.kernels.cpu.conv import dispatch
from nbconv.kernels.cpu.conv.plan import plan


def add_arguments(parser, repeat=3, layers=None, passes=None):
    """--rounds, --repeat, --threads, --clock wall|thread, --layers, --passes (when `passes` is given, their
    default) and --no-torch."""
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=repeat)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--clock", choices=("wall", "thread"), default="wall")
    parser.add_argument("--layers", default=layers)
    if passes is not None:
        parser.add_argument("--passes", default=passes)
    parser.add_argument("--no-torch", action="store_true")


def set_up(args):
    """Numba's (and PyTorch's, unless --no-torch) thread count from --threads; the clock --clock names: the
    calling thread's CPU time (use with --threads 1: other threads' time is not seen) or wall time."""
    if args.threads:
        numba.set_num_threads(args.threads)
        if not args.no_torch:
            import torch
            torch.set_num_threads(args.threads)
    return time.thread_time if args.clock == "thread" else time.perf_counter


def runner(pass_, algorithm, x, w, b, grad_y, stride, padding, modules=None):
    """One pass by `algorithm` (None: the plan's choice) as a function of no arguments; modules: another
    tree's (plan, dispatch) (default: this one's)."""
    plan_, dispatch_ = modules or (plan, dispatch)
    chosen = plan_(pass_, x.shape, w.shape, stride, stride, padding, padding, dtype=x.dtype, algorithm=algorithm)
    out = np.empty(chosen.convolution.output_shape if pass_ == "forward" else
                   x.shape if pass_ == "backward_input" else w.shape, x.dtype)
    if pass_ == "forward":
        return lambda: dispatch_.run_forward(chosen, x, w, b, out)
    if pass_ == "backward_input":
        return lambda: dispatch_.run_backward_input(chosen, grad_y, w, out)
    return lambda: dispatch_.run_backward_weight(chosen, grad_y, x, out)


def torch_runner(pass_, x, w, b, grad_y, stride, padding):
    """The same pass by PyTorch (CPU), as a function of no arguments."""
    import torch
    import torch.nn.functional as tF
    tx, tw, tb, tg = (torch.from_numpy(a) for a in (x, w, b, grad_y))
    if pass_ == "forward":
        return lambda: tF.conv2d(tx, tw, tb, stride, padding)
    if pass_ == "backward_input":
        return lambda: torch.nn.grad.conv2d_input(tx.shape, tw, tg, stride, padding)
    return lambda: torch.nn.grad.conv2d_weight(tx, tw.shape, tg, stride, padding)


def timed(function, repeat, clock):
    """The mean time of `repeat` calls of function, by clock."""
    start = clock()
    for _ in range(repeat):
        function()
    return (clock() - start) / repeat


def alternating_rounds(contenders, rounds, repeat, clock, warm_up=1):
    """{name: [the mean time of `repeat` calls, one per round]} for contenders {name: function of no arguments},
    each called `warm_up` times first (compile, allocate), then timed one after the other, round after round, so
    that the machine's drift meets them alike."""
    for function in contenders.values():
        for _ in range(warm_up):
            function()
    times = {key: [] for key in contenders}
    for _ in range(rounds):
        for key, function in contenders.items():
            times[key].append(timed(function, repeat, clock))
    return times
