"""Datasets: MNIST and Fashion-MNIST (IDX), CIFAR-10/100 (binary), synthetic images; the batch pipeline."""
from .datasets import DATASETS, Splits, describe, load  # noqa: F401
from .errors import DataFileError, DataUnavailableError  # noqa: F401
from .idx import IDXError, read_idx, write_idx  # noqa: F401
