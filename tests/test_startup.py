"""The command line app's start: Numba's array-math registry without SciPy's BLAS (nbconv.startup)."""
import subprocess
import sys

import pytest

PROGRAM = """
import sys
import numpy as np
from nbconv.startup import skip_numba_scipy_blas
print(skip_numba_scipy_blas())
import nbconv.functional as F
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
y = F.conv2d(x, w, None, padding=1)
grad_x, grad_w, _ = F.conv2d_backward(np.ones_like(y), x, w, padding=1)
print("scipy.linalg" in sys.modules)
np.save(sys.argv[1], np.concatenate([y.ravel(), grad_x.ravel(), grad_w.ravel()]))
print(skip_numba_scipy_blas())
"""


def run(program, *args):
    return subprocess.run([sys.executable, "-c", program, *args], capture_output=True, text=True, check=True).stdout


def test_kernels_run_without_scipy_linalg_and_give_the_same_results(tmp_path):
    pytest.importorskip("scipy.linalg")
    skipped = run(PROGRAM, str(tmp_path / "skipped.npy")).split()
    assert skipped == ["True", "False", "False"]  # done once; scipy.linalg never loaded; a second call: no-op
    plain = PROGRAM.replace("print(skip_numba_scipy_blas())\n", "print(True)\n", 1)
    run(plain, str(tmp_path / "plain.npy"))
    import numpy as np
    assert np.array_equal(np.load(tmp_path / "skipped.npy"), np.load(tmp_path / "plain.npy"))


def test_scipy_linalg_stays_importable_afterwards():
    pytest.importorskip("scipy.linalg")
    out = run("from nbconv.startup import skip_numba_scipy_blas\nskip_numba_scipy_blas()\n"
              "import scipy.linalg\nprint(scipy.linalg.det([[2.0, 0.0], [0.0, 3.0]]))")
    assert float(out) == 6.0


def test_the_app_does_not_load_scipy_linalg():
    out = run("import sys\nsys.argv = ['nbconv', 'info']\nfrom nbconv_cli.main import main\n"
              "try:\n    main()\nexcept SystemExit:\n    pass\n"
              "import numpy as np, nbconv.functional as F\nF.relu(np.ones(3, np.float32))\n"
              "print('scipy.linalg' in sys.modules)")
    assert out.split()[-1] == "False"
