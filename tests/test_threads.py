"""Concurrent calls from Python threads give the single-threaded results, on every convolution path."""
import threading

import numpy as np
import pytest

import nbconv.functional as F
from nbconv.kernels.cpu.conv.plan import PASSES, plan

THREADS, CALLS = 4, 12


def _conv_case(rng, input_shape, weight_shape, **hyper):
    x = rng.standard_normal(input_shape).astype(np.float32)
    w = rng.standard_normal(weight_shape).astype(np.float32)
    y = F.conv2d(x, w, **hyper)
    grad_y = rng.standard_normal(y.shape).astype(np.float32)

    def call():
        return (F.conv2d(x, w, **hyper),) + F.conv2d_backward(grad_y, x, w, **hyper)
    return call


# (input shape, weight shape, hyper-parameters, the algorithm the plan picks for the forward pass)
CONV_CASES = [
    ((2, 32, 22, 22), (32, 32, 3, 3), dict(padding=1), "winograd"),
    ((2, 128, 7, 9), (128, 128, 3, 3), dict(padding=1), "winograd4"),
    ((2, 16, 6, 34), (16, 16, 3, 3), dict(padding=1), "shift"),
    ((2, 3, 9, 10), (9, 3, 3, 3), dict(padding=1), "wide"),
    ((2, 3, 9, 10), (4, 3, 3, 3), dict(padding=1), "flat"),
    ((2, 6, 14, 14), (24, 6, 5, 5), dict(), "strips"),
    ((2, 6, 14, 14), (16, 6, 5, 5), dict(), "lanes"),  # LeNet-5's second layer: row_lanes for its input gradient
    ((3, 16, 9, 10), (17, 16, 3, 3), dict(stride=2, padding=1), "lanes"),
    ((2, 16, 5, 20), (17, 16, 3, 3), dict(padding=1), "lanes"),
    ((2, 3, 9, 10), (4, 3, 3, 3), dict(stride=2, padding=1), "gemm"),
    ((2, 5, 6, 7), (4, 5, 1, 1), dict(), "pointwise"),
    ((3, 5, 9, 8), (4, 5, 1, 1), dict(stride=2), "subsampled"),
    ((2, 6, 9, 8), (6, 1, 3, 3), dict(padding=1, groups=6), "depthwise3x3"),
    ((2, 6, 9, 8), (6, 1, 5, 5), dict(padding=2, groups=6), "direct"),
]


def test_the_cases_cover_every_convolution_path():
    for input_shape, weight_shape, hyper, path in CONV_CASES:
        args = (hyper.get("stride", 1),) * 2 + (hyper.get("padding", 0),) * 2 + (1, 1, hyper.get("groups", 1))
        assert plan(PASSES[0], input_shape, weight_shape, *args).algorithm == path


def _other_calls(rng):
    x = rng.standard_normal((3, 4, 9, 9)).astype(np.float32)
    pooled, indices = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    grad_pooled = rng.standard_normal(pooled.shape).astype(np.float32)
    features = rng.standard_normal((5, 7)).astype(np.float32)
    weight = rng.standard_normal((3, 7)).astype(np.float32)
    return [
        lambda: (F.max_pool2d(x, 3, 2, 1), F.max_pool2d_backward(grad_pooled, x, 3, 2, 1)),
        lambda: (F.avg_pool2d(x, 3, 2, 1), F.avg_pool2d_backward(grad_pooled, x, 3, 2, 1)),
        lambda: (F.linear(features, weight),) + F.linear_backward(np.ones((5, 3), np.float32), features, weight),
        lambda: (F.relu(x), F.tanh_backward(x, x)),
    ]


def _assert_same_results_under_threads(calls):
    expected = [call() for call in calls]
    failures = []
    start = threading.Barrier(THREADS)

    def worker(offset):
        start.wait()
        for step in range(CALLS):
            index = (offset + step) % len(calls)  # threads run different calls at the same moment
            for got, want in zip(calls[index](), expected[index]):
                if not np.array_equal(got, want, equal_nan=True):
                    failures.append(index)
    threads = [threading.Thread(target=worker, args=(offset,)) for offset in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, f"{len(failures)} wrong results, from calls {sorted(set(failures))}"


def test_concurrent_convolutions_on_every_path(rng):
    _assert_same_results_under_threads([_conv_case(rng, *case[:2], **case[2]) for case in CONV_CASES])


@pytest.mark.parametrize("case", CONV_CASES, ids=[case[3] for case in CONV_CASES])
def test_concurrent_calls_of_one_path(rng, case):
    _assert_same_results_under_threads([_conv_case(rng, *case[:2], **case[2])])


def test_concurrent_pooling_linear_and_activations(rng):
    _assert_same_results_under_threads(_other_calls(rng))
