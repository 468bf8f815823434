"""The command line app's start: Numba's array-math registry without SciPy's BLAS (nbconv.startup)."""
import os
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


def after_the_app(program):
    """The output of `program` run after the app's `nbconv info`, in the same process."""
    return run("import sys\nsys.argv = ['nbconv', 'info']\nfrom nbconv_cli.main import main\n"
               "try:\n    main()\nexcept SystemExit:\n    pass\n" + program)


def test_the_app_does_not_load_scipy_linalg():
    out = after_the_app("import numpy as np, nbconv.functional as F\nF.relu(np.ones(3, np.float32))\n"
                        "print('scipy.linalg' in sys.modules)")
    assert out.split()[-1] == "False"


CACHED_MODULE = """
import numpy as np
from numba import njit


@njit(cache=True)
def doubled(values):
    out = np.empty_like(values)  # allocates: the loaded code calls Numba's runtime
    for i in range(values.shape[0]):
        out[i] = 2 * values[i]
    return out
"""

LOAD_AFTER_SKIP = """
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from nbconv.startup import skip_numba_refresh_on_cache_load
print(skip_numba_refresh_on_cache_load(), skip_numba_refresh_on_cache_load())
import cached_kernels
from numba import njit
import nbconv.functional as F
values = np.arange(5, dtype=np.float32) - 2
print(cached_kernels.doubled(values).tolist(), F.relu(values).tolist())
print(sorted(cached_kernels.doubled.stats.cache_hits.values()), "numba.typed.typeddict" in sys.modules)
from numba import types
from numba.typed import Dict


@njit
def counted(keys):  # compiled here, after the loads: it needs the typed dict's registries
    seen = Dict.empty(types.int64, types.int64)
    for key in keys:
        seen[key] = 1
    return len(seen)


print(counted(np.array([3, 1, 3, 2])))
"""


def test_kernels_load_from_the_cache_without_numba_s_registries_and_later_compiles_still_get_them(tmp_path):
    (tmp_path / "cached_kernels.py").write_text(CACHED_MODULE)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    fill = "import sys\nsys.path.insert(0, sys.argv[1])\nimport numpy as np\nimport cached_kernels\n" \
           "import nbconv.functional as F\ncached_kernels.doubled(np.ones(3, np.float32))\n" \
           "F.relu(np.ones(3, np.float32))\n"
    subprocess.run([sys.executable, "-c", fill, str(tmp_path)], check=True, env=env)  # compiles and caches
    out = subprocess.run([sys.executable, "-c", LOAD_AFTER_SKIP, str(tmp_path)], capture_output=True, text=True,
                         check=True, env=env).stdout.splitlines()
    assert out[0] == "True False"  # done once; a second call changes nothing
    assert out[1] == "[-4.0, -2.0, 0.0, 2.0, 4.0] [0.0, 0.0, 0.0, 1.0, 2.0]"
    assert out[2] == "[1] False"  # loaded from the cache, and Numba's typed containers were not imported for it
    assert out[3] == "3"


def test_the_app_skips_numba_s_refresh_for_its_cache_loads():
    out = after_the_app("from numba.core.caching import FunctionCache\n"
                        "print(getattr(FunctionCache.load_overload, 'skips_refresh', False))")
    assert out.split()[-1] == "True"
