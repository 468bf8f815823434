"""Scratch buffers for the CPU kernels (see nbconv.kernels.workspace)."""
import numpy as np

from ..workspace import Scratch

scratch = Scratch(np.empty)
release = scratch.release
