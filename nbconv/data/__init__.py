"""Datasets: the IDX reader and MNIST / Fashion-MNIST loading."""
from .datasets import DATASETS, DataUnavailableError, Splits, load  # noqa: F401
from .idx import IDXError, read_idx, write_idx  # noqa: F401
