"""The training progress bar: redrawn at most REDRAWS_PER_SECOND times a second, always at an epoch's start and
end, with the latest status."""
import click
import pytest

from nbconv_cli import progress as progress_module
from nbconv_cli.progress import EpochProgress


class FakeBar:
    """Records what a click progress bar is asked to draw."""

    def __init__(self, length, item_show_func, **options):
        self.length, self.show, self.pos = length, item_show_func, 0
        self.draws, self.closed = [], False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.closed = True

    def update(self, steps):
        self.pos += steps
        self.draws.append((self.pos, self.show(None)))


@pytest.fixture
def bars(monkeypatch):
    """The bars the progress callback opens, each a FakeBar, in order."""
    opened = []
    monkeypatch.setattr(click, "progressbar", lambda **options: opened.append(FakeBar(**options)) or opened[-1])
    return opened


@pytest.fixture
def now():
    """The test's clock, [seconds]: the tests move it on."""
    return [0.0]


def test_redraws_are_limited_and_the_last_step_is_drawn(bars, now):
    progress = EpochProgress(2, clock=lambda: now[0])
    step_seconds = 0.004  # a LeNet-5 step: 250 reports a second
    for epoch in range(2):
        progress(epoch, 0, 500, "")
        for done in range(1, 501):
            now[0] += step_seconds
            progress(epoch, done, 500, f"step {done}")
    assert len(bars) == 2 and all(bar.closed for bar in bars)
    for bar in bars:
        assert bar.draws[0] == (0, "")  # the epoch's start
        assert bar.draws[-1] == (500, "step 500")  # its end, with the last status
        seconds = 500 * step_seconds
        assert len(bar.draws) <= seconds * progress_module.REDRAWS_PER_SECOND + 2
        assert len(bar.draws) >= seconds * progress_module.REDRAWS_PER_SECOND - 1
        positions = [position for position, _ in bar.draws]
        assert positions == sorted(positions)
        assert all(status == ("" if position == 0 else f"step {position}") for position, status in bar.draws)


def test_slow_steps_are_each_drawn(bars, now):
    progress = EpochProgress(1, clock=lambda: now[0])
    progress(0, 0, 5, "")
    for done in range(1, 4):
        now[0] += 1.0
        progress(0, done, 5, f"step {done}")
    progress.close()  # interrupted before the end
    assert bars[0].draws == [(0, ""), (1, "step 1"), (2, "step 2"), (3, "step 3")] and bars[0].closed


def test_a_bar_closed_mid_epoch_shows_the_last_step_reported(bars, now):
    progress = EpochProgress(1, clock=lambda: now[0])
    progress(0, 0, 500, "")
    for done in range(1, 8):
        now[0] += 0.004  # within one redraw interval: none of these steps is drawn as it comes
        progress(0, done, 500, f"step {done}")
    assert bars[0].draws == [(0, "")]
    progress.close()  # interrupted at step 7
    assert bars[0].draws[-1] == (7, "step 7") and bars[0].closed
