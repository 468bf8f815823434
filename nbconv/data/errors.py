"""The two ways getting a dataset can fail: a file that is not what it should be, or no data at all."""


class DataFileError(ValueError):
    """A dataset file that cannot be used: corrupt, truncated, of the wrong size or format, or holding
    labels outside the dataset's classes. The message names the file and what was expected."""


class DataUnavailableError(RuntimeError):
    """The dataset is neither on disk nor downloadable, and no fallback applies."""
