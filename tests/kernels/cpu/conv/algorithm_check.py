"""Run one convolution algorithm, forced through the plan, and check its passes against the float64 reference,
from several Python threads at once and over Numba thread counts."""
import threading

import numba
import numpy as np

from nbconv.kernels.cpu.conv import dispatch
from nbconv.kernels.cpu.conv.plan import plan
from nbconv.kernels.serial import LAUNCH_LOCK
from tests import reference


def pair(value):
    return value if isinstance(value, tuple) else (value, value)


def random_case(case, rng, dtype=np.float64):
    """(input, weight, bias, hyper-parameters in the kernels' order) for
    case = (N, C, H, W, D, kernel, stride, padding, dilation, groups); kernel, stride, padding and dilation
    an int or an (h, w) pair."""
    N, C, H, W, D, kernel, stride, padding, dilation, groups = case
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((D, C // groups) + pair(kernel)).astype(dtype)
    b = rng.standard_normal(D).astype(dtype)
    return x, w, b, pair(stride) + pair(padding) + pair(dilation) + (groups,)


def run(algorithm, pass_, x, w, b, grad_y, hyper):
    """One pass of `algorithm` (plan's name) on these arrays: the output, input gradient or weight gradient."""
    chosen = plan(pass_, x.shape, w.shape, *hyper, dtype=x.dtype, algorithm=algorithm)
    assert chosen.algorithm == algorithm
    if pass_ == "forward":
        out = np.full(chosen.convolution.output_shape, np.nan, x.dtype)  # every element must be written
        dispatch.run_forward(chosen, x, w, b, out)
    elif pass_ == "backward_input":
        out = np.full(x.shape, np.nan, x.dtype)
        dispatch.run_backward_input(chosen, grad_y, w, out)
    else:
        out = np.full(w.shape, np.nan, x.dtype)
        dispatch.run_backward_weight(chosen, grad_y, x, out)
    return out


def check(algorithm, case, rng, passes=("forward", "backward_input", "backward_weight"), dtype=np.float64,
          tolerance=1e-12, finite_differences=False):
    """Each of `passes` of `algorithm` on a random `case` against reference.conv2d and its gradients; with
    finite_differences, the gradients also against central differences of the reference forward."""
    x, w, b, hyper = random_case(case, rng, dtype)
    stride, padding, dilation, groups = hyper[0:2], hyper[2:4], hyper[4:6], hyper[6]
    pads = tuple((p, p) for p in padding)
    expected = reference.conv2d(x, w, b, stride, pads, dilation, groups)
    grad_y = rng.standard_normal(expected.shape).astype(dtype)
    scale = max(1.0, np.abs(expected).max())
    if "forward" in passes:
        np.testing.assert_allclose(run(algorithm, "forward", x, w, b, grad_y, hyper), expected, rtol=tolerance,
                                   atol=tolerance * scale)
    wanted = {"backward_input": (x, reference.conv2d_backward_input(grad_y, w, x.shape, stride, pads, dilation,
                                                                    groups)),
              "backward_weight": (w, reference.conv2d_backward_weight(grad_y, x, w.shape, stride, pads, dilation,
                                                                      groups))}
    for pass_ in passes:
        if pass_ == "forward":
            continue
        array, by_definition = wanted[pass_]
        got = run(algorithm, pass_, x, w, b, grad_y, hyper)
        np.testing.assert_allclose(got, by_definition, rtol=tolerance,
                                   atol=tolerance * max(1.0, np.abs(by_definition).max()))
        if finite_differences:
            forward = lambda: reference.conv2d(x, w, b, stride, pads, dilation, groups)  # noqa: E731
            numerical = reference.numerical_gradient(forward, array, grad_y)
            np.testing.assert_allclose(got, numerical, rtol=1e-6, atol=1e-7 * max(1.0, np.abs(numerical).max()))


def check_concurrent_calls(algorithm, pass_, case, rng, calls=4):
    """`pass_` of `algorithm` on a random float64 `case`, run from `calls` Python threads at once (each holding
    the launch lock, as the public kernels do), gives what one call alone gives, bit for bit."""
    x, w, b, hyper = random_case(case, rng)
    grad_y = rng.standard_normal(plan("forward", x.shape, w.shape, *hyper, dtype=x.dtype).convolution.output_shape)
    alone = run(algorithm, pass_, x, w, b, grad_y, hyper)
    results = [None] * calls

    def work(i):
        with LAUNCH_LOCK:
            results[i] = run(algorithm, pass_, x, w, b, grad_y, hyper)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        np.testing.assert_array_equal(result, alone)


def check_thread_counts_agree(compute, counts=(1, 2)):
    """compute() gives the same array, bit for bit, with each of `counts` Numba threads (and the number set
    now), each capped at the threads Numba started."""
    before = numba.get_num_threads()
    try:
        results = []
        for threads in sorted(set(counts) | {before}):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            results.append(compute())
    finally:
        numba.set_num_threads(before)
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])
