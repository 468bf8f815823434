"""conv/gemm.py: im2col over output rows, any stride ('gemm'), and the pointwise shortcut ('pointwise')."""
import pytest

from nbconv.kernels.cpu.conv import blocks
from tests.kernels.cpu.conv.algorithm_check import check

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
    check("gemm", case, rng, finite_differences=case is STRIDED[0])


@pytest.mark.parametrize("cache_bytes", [1, blocks.CACHE_BYTES])
@pytest.mark.parametrize("case", POINTWISE)
def test_pointwise_matches_reference(case, cache_bytes, monkeypatch, rng):
    monkeypatch.setattr(blocks, "CACHE_BYTES", cache_bytes)
    check("pointwise", case, rng, finite_differences=case is POINTWISE[1])
    check("gemm", case, rng)  # the same shapes through im2col
