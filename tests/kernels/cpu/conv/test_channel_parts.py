"""Cutting a task's output channels into slices (blocks.channel_parts): the rule, and the gemm, pointwise and
Winograd passes computed right with tasks cut into slices of uneven size (batch 1 on small maps)."""
import pytest

from nbconv.kernels.cpu.conv import blocks, gemm, winograd
from tests.kernels.cpu.conv.algorithm_check import check


def test_slices_only_when_there_are_fewer_tasks_than_threads():
    assert blocks.channel_parts(tasks=4, channels=2048, threads=2) == 1
    assert blocks.channel_parts(tasks=1, channels=2048, threads=2) == 2
    assert blocks.channel_parts(tasks=1, channels=512, threads=16) == 512 // blocks.MIN_PART_CHANNELS
    assert blocks.channel_parts(tasks=3, channels=1024, threads=8) == 3
    assert blocks.channel_parts(tasks=1, channels=blocks.MIN_PART_CHANNELS * 2 - 1, threads=4) == 1
    assert blocks.channel_parts(tasks=0, channels=2048, threads=2) == 1  # an empty batch


@pytest.mark.parametrize("parts", [2, 3, 17])
@pytest.mark.parametrize("algorithm,case,passes", [
    ("pointwise", (1, 5, 7, 3, 17, 1, 1, 0, 1, 1), ("forward",)),
    ("gemm", (2, 4, 9, 7, 17, 3, 2, 1, 1, 1), ("forward",)),
    ("gemm", (1, 6, 8, 7, 18, 1, 2, 0, 1, 2), ("forward",)),    # grouped: slices of each group's channels
    ("winograd", (1, 16, 7, 9, 17, 3, 1, 1, 1, 1), ("forward", "backward_input")),
])
def test_passes_with_channel_slices_match_the_reference(algorithm, case, passes, parts, monkeypatch, rng):
    for module in (gemm, winograd):
        monkeypatch.setattr(module, "channel_parts", lambda tasks, channels, threads: min(parts, channels))
    check(algorithm, case, rng, passes=passes, tolerance=1e-11)


def test_balanced_rows_share_blocks_evenly_among_threads():
    # near-equal blocks: 112 rows in blocks of 15 (7 of 15 and one of 7) become 8 blocks of 14
    assert blocks.balanced_rows(15, 112, images=1, channels=64, threads=2) == 14
    # 28 rows in blocks of 18: one thread would get 18, the other 10; two of 14
    assert blocks.balanced_rows(18, 28, images=1, channels=128, threads=2) == 14
    # one block of 56 rows and too few channels to slice: two blocks
    assert blocks.balanced_rows(73, 56, images=1, channels=64, threads=2) == 28
    # one block whose output channels channel_parts slices: left whole
    assert blocks.balanced_rows(9, 7, images=1, channels=256, threads=2) == 7
    # three tasks for two threads: four
    assert blocks.balanced_rows(10, 27, images=1, channels=32, threads=2) == 7
    # enough tasks already (a batch): only evened out
    assert blocks.balanced_rows(18, 28, images=8, channels=128, threads=2) == 14
    # never more blocks than rows, never more rows than given
    assert blocks.balanced_rows(1, 3, images=1, channels=16, threads=16) == 1
    for rows, out_h, images, channels, threads in [(5, 17, 1, 8, 3), (40, 40, 3, 200, 4), (2, 9, 2, 64, 2)]:
        balanced = blocks.balanced_rows(rows, out_h, images, channels, threads)
        assert 1 <= balanced <= rows


@pytest.mark.parametrize("algorithm,case,passes", [
    ("pointwise", (1, 5, 29, 3, 17, 1, 1, 0, 1, 1), ("forward",)),
    ("gemm", (1, 4, 31, 7, 9, 3, 2, 1, 1, 1), ("forward", "backward_input")),
    ("winograd", (1, 8, 27, 9, 12, 3, 1, 1, 1, 1), ("forward", "backward_input")),
])
def test_passes_with_balanced_blocks_match_the_reference(algorithm, case, passes, monkeypatch, rng):
    """A small cache budget cuts a batch-1 image into several blocks, evened out and made a multiple of the
    thread count: each pass still computes every output once."""
    monkeypatch.setattr(blocks, "CACHE_BYTES", 2048)
    check(algorithm, case, rng, passes=passes, tolerance=1e-11)
