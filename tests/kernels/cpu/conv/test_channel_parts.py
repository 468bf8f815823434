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
