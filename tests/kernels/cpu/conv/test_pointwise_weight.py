"""conv/pointwise_weight.py: 1x1 weight gradients with several images packed into one product."""
import numba
import numpy as np
import pytest

from nbconv.kernels.cpu.conv import dispatch, pointwise_weight
from nbconv.kernels.cpu.conv.plan import plan
from tests.kernels.cpu.conv.algorithm_check import check, random_case

# (N, C, H, W, D, kernel, stride, padding, dilation, groups): odd sizes, groups, one image, more images than a
# product takes, fewer images than chunks
CASES = [
    (5, 7, 3, 5, 9, 1, 1, 0, 1, 1),
    (9, 6, 7, 7, 10, 1, 1, 0, 1, 2),
    (1, 13, 4, 3, 5, 1, 1, 0, 1, 1),
    (17, 4, 2, 3, 6, 1, 1, 0, 1, 1),
    (3, 12, 5, 1, 9, 1, 1, 0, 1, 3),
]


@pytest.mark.parametrize("depth", [1, 20, pointwise_weight.PRODUCT_DEPTH])  # one image a product, a few, many
@pytest.mark.parametrize("case", CASES)
def test_pointwise_weight_matches_reference(case, depth, monkeypatch, rng):
    monkeypatch.setattr(pointwise_weight, "PRODUCT_DEPTH", depth)
    check("pointwise_weight", case, rng, passes=("backward_weight",), finite_differences=case is CASES[1])
    check("pointwise_weight", case, rng, passes=("backward_weight",), dtype=np.float32, tolerance=2e-5)


def test_the_plan_packs_images_only_on_small_maps():
    for size, expected in ((7, "pointwise_weight"), (14, "pointwise_weight"), (28, "pointwise"), (56, "pointwise")):
        assert plan("backward_weight", (8, 64, size, size), (32, 64, 1, 1), 1, 1, 0, 0, 1, 1, 1).algorithm == expected
        assert plan("forward", (8, 64, size, size), (32, 64, 1, 1), 1, 1, 0, 0, 1, 1, 1,
                    dtype=np.float64).algorithm == "pointwise"
    assert plan("backward_weight", (8, 64, 7, 7), (32, 64, 1, 1), 2, 2, 0, 0, 1, 1, 1).algorithm == "subsampled"


def test_the_sums_do_not_depend_on_the_thread_count(rng):
    """Chunks, their images and products come from the shape alone: 1 and 2 threads give the same bits."""
    x, w, _, hyper = random_case((11, 24, 5, 6, 20, 1, 1, 0, 1, 1), rng, np.float32)
    grad_y = rng.standard_normal((11, 20, 5, 6)).astype(np.float32)
    before = numba.get_num_threads()
    results = []
    try:
        for count in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(count)
            chosen = plan("backward_weight", x.shape, w.shape, *hyper, dtype=x.dtype)
            assert chosen.algorithm == "pointwise_weight" and chosen.buffers[2].shape[0] > 2  # chunks to claim
            out = np.full(w.shape, np.nan, np.float32)
            dispatch.run_backward_weight(chosen, grad_y, x, out)
            results.append(out)
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(results[0], results[1])


def test_the_packed_buffers_hold_every_product(rng):
    """For every batch, the plan's packed buffers are as wide as the products the pass packs (one image, fewer
    images than a product takes, more), and the pass writes nothing past them: sentinels after the scratch
    views stay."""
    for N in (1, 2, 3, 40):
        x, w, _, hyper = random_case((N, 6, 3, 4, 5, 1, 1, 0, 1, 1), rng, np.float32)
        grad_y = rng.standard_normal((N, 5, 3, 4)).astype(np.float32)
        chosen = plan("backward_weight", x.shape, w.shape, *hyper, dtype=x.dtype)
        assert chosen.algorithm == "pointwise_weight"
        images = min(N, pointwise_weight.images_per_product(12))
        shapes = {buffer.name: buffer.shape for buffer in chosen.buffers}
        if images > 1:
            assert shapes["packed_input"][2] >= images * 12 and shapes["packed_grad"][2] >= images * 12
        buffers = {name: np.full((shape[0] * int(np.prod(shape[1:])) + 64,), 7.0, np.float32)
                   for name, shape in shapes.items()}
        views = {name: buffers[name][:-64].reshape(shapes[name]) for name in shapes}
        out = np.empty(w.shape, np.float32)
        pointwise_weight.backward_weight(grad_y, x, out, views, chosen)
        for name in shapes:
            assert (buffers[name][-64:] == 7.0).all(), name
        np.testing.assert_allclose(out, np.einsum("ndp,ncp->dc", grad_y.reshape(N, 5, 12).astype(np.float64),
                                                  x.reshape(N, 6, 12).astype(np.float64)).reshape(w.shape),
                                   rtol=1e-5, atol=1e-5)
