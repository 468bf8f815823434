"""The CPU matrix product the convolutions call: the compiled fallback against numpy, and the kernels on it."""
import os
import subprocess
import sys

import numpy as np
import pytest

from nbconv.kernels.cpu import blas


@pytest.mark.parametrize("trans_a,trans_b", [(blas.NO_TRANS, blas.NO_TRANS), (blas.TRANS, blas.NO_TRANS),
                                             (blas.NO_TRANS, blas.TRANS), (blas.TRANS, blas.TRANS)])
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5])
def test_reference_gemm_matches_numpy(trans_a, trans_b, beta, rng):
    m, n, k, ld_extra = 5, 7, 3, 2
    a = rng.standard_normal((k, m + ld_extra) if trans_a == blas.TRANS else (m, k + ld_extra))
    b = rng.standard_normal((n, k + ld_extra) if trans_b == blas.TRANS else (k, n + ld_extra))
    c = rng.standard_normal((m, n + ld_extra))
    op_a = a[:, :m].T if trans_a == blas.TRANS else a[:, :k]
    op_b = b[:, :k].T if trans_b == blas.TRANS else b[:, :n]
    expected = c.copy()
    expected[:, :n] = 1.5 * op_a @ op_b + beta * c[:, :n]
    blas.reference_gemm(trans_a, trans_b, m, n, k, 1.5, a.ravel(), a.shape[1], b.ravel(), b.shape[1], beta,
                        c.reshape(-1), c.shape[1])
    np.testing.assert_allclose(c, expected, rtol=1e-12, atol=1e-12)


def test_fallback_product_runs_the_kernels(tmp_path):
    """Without an OpenBLAS nbconv can call (forced here), the kernels run on the compiled fallback."""
    script = (
        "import numpy as np, nbconv.functional as F\n"
        "from nbconv.kernels.cpu import blas\n"
        "from tests import reference\n"
        "assert 'fallback' in blas.status(), blas.status()\n"
        "rng = np.random.default_rng(0)\n"
        "for dtype in (np.float32, np.float64):\n"
        "    x = rng.standard_normal((2, 3, 6, 5)).astype(dtype); w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)\n"
        "    y = F.conv2d(x, w, padding=1)\n"
        "    np.testing.assert_allclose(y, reference.conv2d(x, w, None, (1, 1), ((1, 1), (1, 1))), rtol=1e-4, atol=1e-4)\n"
        "    gx, gw, gb = F.conv2d_backward(np.ones_like(y), x, w, padding=1)\n"
        "    assert np.isfinite(gx).all() and np.isfinite(gw).all()\n"
        "print('ok')\n")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=root,
                            env={**os.environ, "NBCONV_BLAS": "numba"}, timeout=600)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
