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


needs_openblas = pytest.mark.skipif(blas.BLAS.set_threads is None, reason="numpy's BLAS is not an OpenBLAS nbconv drives")


@pytest.fixture
def two_blas_threads():
    """numpy's OpenBLAS set to 2 threads for the test (whatever the machine's cores), then set back."""
    before = blas.BLAS.get_threads()
    blas.BLAS.set_threads(2)
    yield
    blas.BLAS.set_threads(before)


@needs_openblas
def test_single_threaded_regions_nest_and_give_numpy_its_setting_back(two_blas_threads):
    with blas.single_threaded():
        assert blas.BLAS.get_threads() == 1
        with blas.single_threaded():
            assert blas.BLAS.get_threads() == 1
        assert blas.BLAS.get_threads() == 1  # an inner region's end leaves the outer one's setting
    assert blas.BLAS.get_threads() == 2
    with pytest.raises(RuntimeError, match="inside"):
        with blas.single_threaded():
            raise RuntimeError("inside")
    assert blas.BLAS.get_threads() == 2


@needs_openblas
def test_single_threaded_regions_from_several_python_threads(two_blas_threads):
    """Regions that overlap in time on different threads: one thread inside the whole time they overlap,
    numpy's setting back once the last ends."""
    import threading
    start, inside = threading.Barrier(4), []

    def worker(index):
        start.wait()
        for step in range(200):
            with blas.single_threaded():
                inside.append(blas.BLAS.get_threads())
                if (index + step) % 7 == 0:
                    with blas.single_threaded():
                        inside.append(blas.BLAS.get_threads())
    threads = [threading.Thread(target=worker, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(inside) == {1} and len(inside) > 800
    assert blas.BLAS.get_threads() == 2


@needs_openblas
def test_a_training_pass_switches_blas_once_each_way(two_blas_threads, monkeypatch):
    """LeNet-5's forward and backward each switch OpenBLAS to one thread once, around all their layers' kernel
    regions (24 a step), and back."""
    from nbconv import models
    model = models.build("lenet5", input_shape=(1, 28, 28), seed=0)
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    model.backward(np.ones_like(model.forward(x)), need_input_grad=False)  # first calls: validated paths
    switches, set_threads = [], blas.BLAS.set_threads
    monkeypatch.setattr(blas.BLAS, "set_threads", lambda count: switches.append(count) or set_threads(count))
    model.backward(np.ones_like(model.forward(x)), need_input_grad=False)
    assert switches == [1, 2, 1, 2]
