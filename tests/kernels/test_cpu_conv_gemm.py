"""The CPU convolution's matrix-product algorithms: Winograd F(2x2, 3x3), the two unrollings (wide rows for
stride 1, output rows for any stride), row blocks, parallel chunks, the pointwise shortcut, thread-count
independence and the fallback matrix product."""
import os
import subprocess
import sys

import numba
import numpy as np
import pytest

import nbconv.functional as F
from nbconv.kernels.cpu import blas, conv, conv_gemm
from tests import reference

WINOGRAD_RULE = conv.WINOGRAD_CHANNELS, conv.WINOGRAD_WORK  # the real thresholds, before the fixture


@pytest.fixture(autouse=True)
def winograd_on_small_images(monkeypatch):
    """Let this file's small images with 16 or more channels take the Winograd path."""
    monkeypatch.setattr(conv, "WINOGRAD_CHANNELS", 16)
    monkeypatch.setattr(conv, "WINOGRAD_WORK", 0)


# (N, C, H, W, D, K, stride, padding, dilation, groups); each runs with blocks of one output row
CASES = [
    (3, 4, 9, 7, 6, 3, 1, 1, 1, 1),
    (2, 6, 11, 10, 4, 3, 2, 2, 2, 2),
    (5, 3, 6, 6, 5, 1, 1, 0, 1, 1),   # pointwise: reads the input directly
    (2, 4, 7, 5, 6, 1, 1, 0, 1, 2),   # pointwise with groups
    (4, 2, 8, 9, 3, 1, 2, 1, 1, 1),   # 1x1 but strided and padded: goes through im2col
    (3, 4, 9, 8, 6, (2, 3), 1, (2, 1), 2, 2),  # stride 1, non-square, dilated, grouped: the wide unrolling
    (2, 1, 5, 4, 2, (5, 3), 1, (2, 1), 1, 1),  # kernel taller than the input, reaching only padding rows
    (2, 16, 7, 9, 17, 3, 1, 1, 1, 1),  # Winograd-eligible (3x3, stride 1, 16+ channels): odd output sizes
    (1, 16, 6, 5, 16, 3, 1, 0, 1, 1),
    (2, 16, 5, 6, 16, 3, 1, 2, 1, 1),
    (1, 16, 5, 5, 16, 3, 1, 3, 1, 1),  # padding 3: the input gradient is no Winograd convolution
]


def _force(monkeypatch, algorithm):
    """Run stride-1 convolutions through `algorithm` ('shift', 'wide' or 'gemm'); 'auto' leaves the choice
    alone."""
    if algorithm == "auto":
        return
    choose = conv._algorithm

    def forced(input_shape, weight, stride_h, stride_w, *rest):
        chosen = choose(input_shape, weight, stride_h, stride_w, *rest)
        unit_stride = stride_h == stride_w == 1
        return algorithm if chosen in ("winograd", "shift", "wide", "gemm") and unit_stride else chosen
    monkeypatch.setattr(conv, "_algorithm", forced)


def _pair(value):
    return value if isinstance(value, tuple) else (value, value)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("cache_bytes", [1, conv_gemm.CACHE_BYTES])
@pytest.mark.parametrize("algorithm", ["auto", "shift", "wide", "gemm"])
def test_conv2d_row_blocks_match_reference(case, cache_bytes, algorithm, monkeypatch, rng):
    monkeypatch.setattr(conv_gemm, "CACHE_BYTES", cache_bytes)
    _force(monkeypatch, algorithm)
    N, C, H, W, D, K, stride, padding, dilation, groups = case
    K = _pair(K)
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((D, C // groups) + K)
    b = rng.standard_normal(D)
    hyper = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    y = F.conv2d(x, w, b, **hyper)
    pad = tuple((p, p) for p in _pair(padding))
    np.testing.assert_allclose(y, reference.conv2d(x, w, b, _pair(stride), pad, _pair(dilation), groups),
                               rtol=1e-12, atol=1e-12)
    grad_y = rng.standard_normal(y.shape)
    grad_x, grad_w, grad_b = F.conv2d_backward(grad_y, x, w, **hyper)
    forward = lambda: F.conv2d(x, w, b, **hyper)  # noqa: E731
    for got, array in ((grad_x, x), (grad_w, w)):
        numerical = reference.numerical_gradient(forward, array, grad_y)
        # central differences lose ~1e-7 of the largest gradient (sums over up to 16 channels here)
        np.testing.assert_allclose(got, numerical, rtol=1e-6, atol=1e-7 * max(1.0, np.abs(numerical).max()))
    np.testing.assert_allclose(grad_b, grad_y.sum(axis=(0, 2, 3)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("channels", [3, 16])  # conv_wide, conv_shift
def test_weight_gradient_does_not_depend_on_thread_count(channels, monkeypatch, rng):
    monkeypatch.setattr(conv_gemm, "CACHE_BYTES", 64)  # many tasks, so the chunks really split the sum
    x = rng.standard_normal((7, channels, 9, 9)).astype(np.float32)
    w = rng.standard_normal((channels + 1, channels, 3, 3)).astype(np.float32)
    grad_y = rng.standard_normal((7, channels + 1, 9, 9)).astype(np.float32)
    before = numba.get_num_threads()
    try:
        results = []
        for threads in sorted({1, before}):
            numba.set_num_threads(threads)
            results.append(F.conv2d_backward(grad_y, x, w, padding=1)[1])
    finally:
        numba.set_num_threads(before)
    assert all(np.array_equal(results[0], other) for other in results[1:])


@pytest.mark.parametrize("trans_a,trans_b", [(blas.NO_TRANS, blas.NO_TRANS), (blas.TRANS, blas.NO_TRANS),
                                             (blas.NO_TRANS, blas.TRANS), (blas.TRANS, blas.TRANS)])
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5])
def test_reference_gemm_matches_numpy(trans_a, trans_b, beta, rng):
    m, n, k, ld_extra = 5, 7, 3, 2
    a = rng.standard_normal((k, m + ld_extra) if trans_a == blas.TRANS else (m, k + ld_extra))
    b = rng.standard_normal((n, k + ld_extra) if trans_b == blas.TRANS else (k, n + ld_extra))
    c = rng.standard_normal((m, n + ld_extra))
    op_a = a[:, :m].T if trans_a == blas.TRANS else a[:, :k]
    op_b = b[:, :k].T if trans_b == blas.TRANS else b[:, :n]
    expected = c.copy()
    expected[:, :n] = 1.5 * op_a @ op_b + beta * c[:, :n]
    blas.reference_gemm(trans_a, trans_b, m, n, k, 1.5, a.ravel(), a.shape[1], b.ravel(), b.shape[1], beta,
                        c.reshape(-1), c.shape[1])
    np.testing.assert_allclose(c, expected, rtol=1e-12, atol=1e-12)


def test_fallback_product_runs_the_kernels(tmp_path):
    """Without an OpenBLAS nbconv can call (forced here), the kernels run on the compiled fallback."""
    script = (
        "import numpy as np, nbconv.functional as F\n"
        "from nbconv.kernels.cpu import blas\n"
        "from tests import reference\n"
        "assert 'fallback' in blas.status(), blas.status()\n"
        "rng = np.random.default_rng(0)\n"
        "for dtype in (np.float32, np.float64):\n"
        "    x = rng.standard_normal((2, 3, 6, 5)).astype(dtype); w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)\n"
        "    y = F.conv2d(x, w, padding=1)\n"
        "    np.testing.assert_allclose(y, reference.conv2d(x, w, None, (1, 1), ((1, 1), (1, 1))), rtol=1e-4, atol=1e-4)\n"
        "    gx, gw, gb = F.conv2d_backward(np.ones_like(y), x, w, padding=1)\n"
        "    assert np.isfinite(gx).all() and np.isfinite(gw).all()\n"
        "print('ok')\n")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=root,
                            env={**os.environ, "NBCONV_BLAS": "numba"}, timeout=600)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def test_stride_1_layers_choose_winograd_shift_or_wide(rng, monkeypatch):
    weight = np.zeros((16, 16, 3, 3), np.float32)
    assert conv._algorithm((2, 16, 8, 8), weight, 1, 1, 1, 1, 1, 1, 1) == "winograd"  # this file's thresholds
    monkeypatch.setattr(conv, "WINOGRAD_CHANNELS", WINOGRAD_RULE[0])  # the real rule
    monkeypatch.setattr(conv, "WINOGRAD_WORK", WINOGRAD_RULE[1])
    assert conv._algorithm((2, 16, 56, 56), weight, 1, 1, 1, 1, 1, 1, 1) == "shift"     # too few channels
    wide32, wide64 = np.zeros((32, 32, 3, 3), np.float32), np.zeros((64, 64, 3, 3), np.float32)
    assert conv._algorithm((2, 32, 28, 28), wide32, 1, 1, 1, 1, 1, 1, 1) == "winograd"
    assert conv._algorithm((2, 32, 14, 14), wide32, 1, 1, 1, 1, 1, 1, 1) == "shift"     # too narrow
    assert conv._algorithm((2, 64, 14, 14), wide64, 1, 1, 1, 1, 1, 1, 1) == "winograd"
    assert conv._algorithm((2, 64, 7, 7), wide64, 1, 1, 1, 1, 1, 1, 1) == "shift"
    assert conv._algorithm((2, 32, 28, 28), wide32, 1, 1, 1, 1, 2, 2, 1) == "shift"     # dilated
    assert conv._algorithm((2, 8, 8, 8), weight[:, :8], 1, 1, 1, 1, 1, 1, 1) == "wide"  # too few channels
    assert conv._algorithm((2, 32, 8, 8), wide32[:, :16], 1, 1, 1, 1, 1, 1, 2) == "shift"  # 16 a group
    assert conv._algorithm((2, 16, 8, 8), weight[:, :8], 1, 1, 1, 1, 1, 1, 2) == "wide"   # 8 a group
    assert conv._algorithm((2, 16, 8, 8), weight, 2, 2, 1, 1, 1, 1, 1) == "gemm"       # strided


def test_winograd_float32_error_stays_small(rng):
    x = rng.standard_normal((2, 32, 15, 14)).astype(np.float32)
    w = rng.standard_normal((24, 32, 3, 3)).astype(np.float32)
    expected = reference.conv2d(x, w, None, (1, 1), ((1, 1), (1, 1)))
    scale = np.abs(expected).max()
    np.testing.assert_allclose(F.conv2d(x, w, padding=1), expected, rtol=0, atol=2e-6 * scale)
    grad_y = rng.standard_normal(expected.shape).astype(np.float32)
    grad_x = F.conv2d_backward(grad_y, x, w, padding=1)[0]
    grad_x64 = F.conv2d_backward(grad_y.astype(np.float64), x.astype(np.float64), w.astype(np.float64), padding=1)[0]
    np.testing.assert_allclose(grad_x, grad_x64, rtol=0, atol=2e-6 * np.abs(grad_x64).max())
