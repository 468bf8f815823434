"""The progress bar of `nbconv train`: nbconv.train reports how far each epoch is, the CLI draws it."""
import click


class EpochProgress:
    """A progress(epoch, steps_done, steps, status) callback for nbconv.train.fit: one bar per epoch on
    stderr, with the status line (running loss, accuracy, speed) beside it. close() ends an unfinished bar."""

    def __init__(self, epochs):
        self.epochs = epochs
        self.epoch = None
        self.bar = None
        self.status = ""

    def __call__(self, epoch, done, steps, status):
        self.status = status
        if self.bar is None or epoch != self.epoch:
            self.close()
            self.epoch = epoch
            self.bar = click.progressbar(length=steps, label=f"epoch {epoch + 1}/{self.epochs}",
                                         file=click.get_text_stream("stderr"), item_show_func=lambda _: self.status,
                                         show_eta=True, width=24)
            self.bar.__enter__()
        self.bar.update(done - self.bar.pos)
        if done >= steps:
            self.close()

    def close(self):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None
