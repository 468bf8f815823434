"""The progress bar of `nbconv train`: nbconv.train reports how far each epoch is, the CLI draws it."""
import time

import click

# At most this many redraws a second. A training step reports every few milliseconds (LeNet-5: 938 steps in
# ~4 s), and on a terminal each redraw is a write the terminal then renders, on the cores the step needs
# (two on the machines measured): ~40 us of this process's time a redraw, plus the terminal's.
REDRAWS_PER_SECOND = 10


class EpochProgress:
    """A progress(epoch, steps_done, steps, status) callback for nbconv.train.fit: one bar per epoch on
    stderr, with the status line (running loss, accuracy, speed) beside it, redrawn at most
    REDRAWS_PER_SECOND times a second (and always when an epoch starts and ends). close() ends an unfinished
    bar. clock: seconds (time.monotonic; tests give their own)."""

    def __init__(self, epochs, clock=time.monotonic):
        self.epochs = epochs
        self.epoch = None
        self.bar = None
        self.status = ""
        self.clock = clock
        self.drawn = None  # the clock at the last redraw
        self.done = 0      # the steps done that the last call reported

    def __call__(self, epoch, done, steps, status):
        self.status = status
        if self.bar is None or epoch != self.epoch:
            self.close()
            self.epoch = epoch
            self.bar = click.progressbar(length=steps, label=f"epoch {epoch + 1}/{self.epochs}",
                                         file=click.get_text_stream("stderr"), item_show_func=lambda _: self.status,
                                         show_eta=True, width=24)
            self.bar.__enter__()
            self.drawn = None
        self.done = done
        now = self.clock()
        if done < steps and self.drawn is not None and now - self.drawn < 1.0 / REDRAWS_PER_SECOND:
            return
        self.drawn = now
        self.bar.update(done - self.bar.pos)
        if done >= steps:
            self.close()

    def close(self):
        """Ends the current bar, first drawn at the last step reported (a stop mid-epoch shows where it stopped)."""
        if self.bar is not None:
            if self.done > self.bar.pos:
                self.bar.update(self.done - self.bar.pos)
            self.bar.__exit__(None, None, None)
            self.bar = None
