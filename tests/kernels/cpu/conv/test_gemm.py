"""conv/gemm.py: im2col over output rows, any stride ('gemm'), and the pointwise shortcut ('pointwise')."""
import numpy as np
import pytest

from nbconv.kernels.cpu.conv import blocks, gemm
from nbconv.kernels.cpu.conv.plan import plan
from tests.kernels.cpu.conv.algorithm_check import check, random_case

# (N, C, H, W, D, kernel, stride, padding, dilation, groups)
STRIDED = [
    (2, 6, 11, 10, 4, 3, 2, 2, 2, 2),
    (4, 2, 8, 9, 3, 1, 2, 1, 1, 1),               # 1x1 but strided and padded: goes through im2col
    (2, 3, 7, 9, 4, (3, 2), (2, 1), (1, 2), 1, 1),
    (1, 3, 8, 8, 3, 5, 3, 2, 1, 3),
    (2, 4, 10, 7, 4, (2, 3), 2, 0, (2, 2), 4),
    (3, 4, 9, 7, 6, 3, 1, 1, 1, 1),               # stride 1 works too
    (2, 1, 5, 4, 2, (5, 3), 1, (2, 1), 1, 1),     # kernel taller than the input, reaching only padding rows
]
POINTWISE = [
    (5, 3, 6, 6, 5, 1, 1, 0, 1, 1),               # reads the input directly
    (2, 4, 7, 5, 6, 1, 1, 0, 1, 2),               # with groups
]


@pytest.mark.parametrize("cache_bytes", [1, blocks.CACHE_BYTES])  # one output row a block, or the default
@pytest.mark.parametrize("case", STRIDED)
def test_gemm_matches_reference(case, cache_bytes, monkeypatch, rng):
    monkeypatch.setattr(blocks, "CACHE_BYTES", cache_bytes)
    monkeypatch.setattr(gemm, "FORWARD_COLUMNS", 1)  # one output row a block in the forward pass too
    check("gemm", case, rng, finite_differences=case is STRIDED[0])


@pytest.mark.parametrize("cache_bytes", [1, blocks.CACHE_BYTES])
@pytest.mark.parametrize("case", POINTWISE)
def test_pointwise_matches_reference(case, cache_bytes, monkeypatch, rng):
    monkeypatch.setattr(blocks, "CACHE_BYTES", cache_bytes)
    check("pointwise", case, rng, finite_differences=case is POINTWISE[1])
    check("gemm", case, rng)  # the same shapes through im2col


# stride 2 along the width, rows of 16-21 outputs with taps reading padding at either end, odd and even widths
WIDE_STRIDE_2 = [
    (1, 3, 9, 37, 5, 7, 2, 3, 1, 1),              # a stem-like 7x7: 19 outputs a row, taps reading padding
    (2, 5, 7, 33, 4, 3, (1, 2), 1, 1, 1),         # 17 outputs: the last tap reads the row's last value
    (1, 4, 6, 34, 3, 3, 2, 0, 1, 1),              # even width, no padding: 16 outputs
    (1, 2, 5, 41, 3, (1, 3), 2, (0, 2), (1, 2), 1),  # dilated taps
    (2, 6, 4, 31, 6, 1, 2, 0, 1, 2),              # 1x1 stride 2 with groups
]


@pytest.mark.parametrize("case", WIDE_STRIDE_2)
def test_wide_stride_2_rows_match_reference(case, rng):
    check("gemm", case, rng, finite_differences=case is WIDE_STRIDE_2[0])
    check("gemm", case, rng, passes=("forward",), dtype=np.float32, tolerance=2e-5)


def test_unrolled_stride_2_rows_equal_a_gather(rng):
    """im2col_rows' stride-2 rows against numpy's gather, on random widths and offsets (both dtypes)."""
    from nbconv.kernels.cpu.conv.gemm import im2col_rows
    for _ in range(40):
        C, H, W = rng.integers(1, 4), rng.integers(1, 9), rng.integers(1, 60)
        KH, KW, padding_h, padding_w = rng.integers(1, 4), rng.integers(1, 8), rng.integers(0, 3), rng.integers(0, 4)
        dtype = (np.float32, np.float64)[rng.integers(2)]
        image = rng.standard_normal((C, H, W)).astype(dtype)
        OH, OW = (H + 2 * padding_h - KH) // 2 + 1, (W + 2 * padding_w - KW) // 2 + 1
        if OH < 1 or OW < 1:
            continue
        col = np.full((C * KH * KW, OH * OW + 3), np.nan, dtype)
        im2col_rows(image, col, 0, OH, KH, KW, OW, 2, 2, padding_h, padding_w, 1, 1)
        padded = np.pad(image, ((0, 0), (padding_h, padding_h), (padding_w, padding_w)))
        for i in range(KH):
            for j in range(KW):
                expected = padded[:, i:i + 2 * OH:2, j:j + 2 * OW:2].reshape(C, -1)
                np.testing.assert_array_equal(col[i * KW + j::KH * KW, :OH * OW], expected)
        assert np.isnan(col[:, OH * OW:]).all()  # nothing written past the rows asked for


def test_forward_blocks_hold_at_least_forward_columns_while_every_thread_gets_one(monkeypatch, rng):
    """A deep layer on a narrow map, whose cache budget allows one output row a block: the forward pass's blocks
    are widened to FORWARD_COLUMNS positions (whole rows) and still match the reference; not where that
    would leave a thread without a block (one image, two threads), nor in the gradients."""
    monkeypatch.setattr(blocks, "CACHE_BYTES", 4096)
    monkeypatch.setattr(gemm, "FORWARD_COLUMNS", 17)
    case = (3, 40, 15, 11, 7, 3, 2, 1, 1, 1)  # 8 x 6 outputs, 360 taps: one row a block by the budget
    x, w, _, hyper = random_case(case, rng)

    def columns(pass_, images, threads):
        return plan(pass_, (images,) + x.shape[1:], w.shape, *hyper, threads=threads).buffers[0].shape[2]
    assert columns("forward", 3, 1) == columns("forward", 3, 2) == columns("forward", 1, 1) == 18  # 3 rows of 6
    assert columns("forward", 1, 4) == 6  # 3 blocks for 4 threads: one row a block, as the budget gives
    assert columns("backward_weight", 3, 1) == columns("backward_input", 3, 1) == 6
    check("gemm", case, rng, passes=("forward",))
    check("gemm", case, rng, passes=("forward",), dtype=np.float32, tolerance=2e-5)


# float32 layers large enough for the BLAS's full micro-kernels and its edge panels alike
NONFINITE_CASES = [
    ("pointwise", (3, 70, 17, 19, 45, 1, 1, 0, 1, 1)),
    ("pointwise", (2, 48, 9, 13, 40, 1, 1, 0, 1, 2)),
    ("gemm", (2, 20, 15, 17, 33, 3, 2, 1, 1, 1)),
    ("gemm", (2, 24, 11, 12, 18, (3, 2), (2, 1), (2, 1), (1, 2), 3)),
]


@pytest.mark.parametrize("where", ["input", "weight", "grad_output"])
@pytest.mark.parametrize("algorithm, case", NONFINITE_CASES)
def test_exact_products_carry_nonfinite_values_by_the_definition(algorithm, case, where, rng):
    """gemm and pointwise compute only the definition's products (dispatch.EXACT_PRODUCTS), so their public
    kernels do not check their results: the algorithm's own passes, with no fallback, give the float64
    definition's NaN and inf positions and finite values."""
    from tests import reference
    from tests.kernels.cpu.conv.algorithm_check import run
    from tests.test_nonfinite import _assert_matches, _sprinkle
    x, w, b, hyper = random_case(case, rng, np.float32)
    stride, padding, dilation, groups = hyper[0:2], hyper[2:4], hyper[4:6], hyper[6]
    pads = tuple((p, p) for p in padding)
    grad_y = rng.standard_normal(reference.conv2d(x, w, b, stride, pads, dilation, groups).shape).astype(np.float32)
    _sprinkle({"input": x, "weight": w, "grad_output": grad_y}[where], rng, 3)
    with np.errstate(invalid="ignore", over="ignore"):
        expected = {"forward": reference.conv2d(x, w, b, stride, pads, dilation, groups),
                    "backward_input": reference.conv2d_backward_input(grad_y, w, x.shape, stride, pads, dilation,
                                                                      groups),
                    "backward_weight": reference.conv2d_backward_weight(grad_y, x, w.shape, stride, pads, dilation,
                                                                        groups)}
    assert any(not np.isfinite(by_definition).all() for by_definition in expected.values())
    for pass_, by_definition in expected.items():
        _assert_matches(run(algorithm, pass_, x, w, b, grad_y, hyper), by_definition, f"{algorithm} {pass_}, {where}")


@pytest.mark.parametrize("algorithm, case", [
    ("pointwise", (7, 33, 9, 13, 21, 1, 1, 0, 1, 1)),   # 7 images over 1-3 threads: uneven claims
    ("gemm", (5, 6, 11, 10, 9, 3, 2, 1, 1, 1)),
])
def test_claimed_chunks_give_the_same_bits_whatever_the_thread_count(algorithm, case, monkeypatch, rng):
    """The threads claim chunks in whatever order they get to them; each chunk's results (and for the weight
    gradient its partial sum, added in chunk order) stay the same: one plan's passes run with 1, 2 and 3
    threads give the same bits (the weight gradient's plan does not depend on the thread count at all), and
    match the reference."""
    import numba
    from nbconv.kernels.cpu.conv import dispatch
    monkeypatch.setattr(blocks, "CACHE_BYTES", 4096)  # several blocks an image: more chunks than threads
    x, w, b, hyper = random_case(case, rng, np.float32)
    plans = {pass_: plan(pass_, x.shape, w.shape, *hyper, dtype=x.dtype, algorithm=algorithm, threads=2)
             for pass_ in ("forward", "backward_input", "backward_weight")}
    assert plans["forward"].buffers[0].shape[0] > 3  # chunks to claim
    grad_y = rng.standard_normal(plans["forward"].convolution.output_shape).astype(np.float32)

    def passes():
        y, grad_x, grad_w = (np.full(shape, np.nan, np.float32) for shape in
                             (grad_y.shape, x.shape, w.shape))
        dispatch.run_forward(plans["forward"], x, w, b, y)
        dispatch.run_backward_input(plans["backward_input"], grad_y, w, grad_x)
        dispatch.run_backward_weight(plans["backward_weight"], grad_y, x, grad_w)
        return y, grad_x, grad_w
    before = numba.get_num_threads()
    results = {}
    try:
        for count in (1, 2, 3):
            numba.set_num_threads(min(count, numba.config.NUMBA_NUM_THREADS))
            results[count] = passes()
    finally:
        numba.set_num_threads(before)
    for count in (2, 3):
        for one, many in zip(results[1], results[count]):
            assert np.array_equal(one, many)
    check(algorithm, case, rng, dtype=np.float32, tolerance=2e-5)
