import os

# The CUDA kernels are tested under Numba's simulator unless a run asks for the real GPU
# (NUMBA_ENABLE_CUDASIM=0). This must happen before anything imports numba.cuda.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
