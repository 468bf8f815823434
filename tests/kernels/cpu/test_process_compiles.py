"""What a LeNet-5 training step's kernels make Numba compile besides themselves, once a process and never kept in
its disk cache: no reshape normaliser (a reshape in compiled code), no np.empty overloads (an allocation in
compiled code), and each min/max overload once (one set of flags among their callers); and the flat views the
kernels take instead of reshaping."""
import os
import subprocess
import sys

import numpy as np
import pytest

from nbconv.kernels.cpu import pool, shared

# Runs LeNet-5's kernels once each on a fresh JIT cache (batch 2) and prints what Numba compiled besides them.
_CHILD = r"""
import collections, json
from numba.core import base, event
subroutines = collections.Counter()
original = base.BaseContext._compile_subroutine_no_cache
def recorded(self, builder, impl, sig, locals={}, flags=None):
    subroutines[getattr(impl, "__qualname__", str(impl))] += 1
    return original(self, builder, impl, sig, locals=locals, flags=flags)
base.BaseContext._compile_subroutine_no_cache = recorded
overloads = collections.Counter()
class Compiles(event.Listener):
    def on_start(self, ev):
        function = ev.data["dispatcher"].py_func
        if function.__module__.startswith("numba"):
            overloads[function.__qualname__ + str(ev.data["args"])] += 1
    def on_end(self, ev):
        pass
event.register("numba:compile", Compiles())
import numpy as np
import nbconv.functional as F
from nbconv.data import batch
from nbconv.kernels.cpu import loss, pool
rng = np.random.default_rng(0)
x1 = rng.standard_normal((2, 1, 28, 28)).astype(np.float32)
w1, b1 = rng.standard_normal((6, 1, 5, 5)).astype(np.float32), np.zeros(6, np.float32)
y1 = F.conv2d(x1, w1, b1, padding=2)
F.conv2d_backward(np.ones_like(y1), x1, w1, padding=2, need_input_grad=False)
p, where = np.empty((2, 6, 14, 14), np.float32), np.empty((2, 6, 14, 14), np.int64)
pool.max_pool2d_forward_2x2(y1, p, where)
w2, b2 = rng.standard_normal((16, 6, 5, 5)).astype(np.float32), np.zeros(16, np.float32)
y2 = F.conv2d(p, w2, b2)
F.conv2d_backward(np.ones_like(y2), p, w2)
loss.softmax_cross_entropy(rng.standard_normal((2, 10)).astype(np.float32), np.zeros(2, np.int64),
                           np.empty(2, np.float32), np.empty((2, 10), np.float32))
batch.shifted_batch(rng.integers(0, 255, (4, 28, 28)).astype(np.uint8), np.array([0, 3]),
                    np.array([[0, 2], [1, 1]]), 1, 0.5, 0.25)
print(json.dumps({"subroutines": subroutines, "overloads": overloads}))
"""


def test_lenet_kernels_compile_no_reshape_or_allocation_and_min_max_once(tmp_path):
    import json
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "NUMBA_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, check=True)
    compiled = json.loads(out.stdout.strip().splitlines()[-1])
    assert not [name for name in compiled["subroutines"] if "reshape" in name], compiled
    assert not [name for name in compiled["overloads"] if "empty" in name or "allocate" in name], compiled
    assert all(count == 1 for count in compiled["overloads"].values()), compiled
    assert compiled["overloads"], "the recorder saw no overload at all: the check would pass whatever ran"


def test_flat_view_is_a_view_and_refuses_what_it_cannot_view(rng):
    array = rng.standard_normal((3, 4, 5)).astype(np.float32)
    flat = shared.flat_view(array)
    assert flat.shape == (60,) and np.shares_memory(flat, array)
    flat[7] = 123.0
    assert array.reshape(-1)[7] == 123.0
    assert shared.flat_view(array, (3, 20)).base is not None
    assert shared.flat_view(array[:0]).shape == (0,)
    with pytest.raises(ValueError, match="C-contiguous"):
        shared.flat_view(array[:, ::2])


def test_sum_partials_into_a_strided_gradient_equals_the_contiguous_sums(rng):
    """A grad_weight that is a strided view (no flat view of it exists) receives the same bits as a contiguous
    one, and nothing outside the view changes."""
    chunks, groups, depth, Dg = 3, 2, 7, 4
    partial = rng.standard_normal((chunks, groups, depth, Dg)).astype(np.float32)
    contiguous = np.empty((groups * Dg, depth, 1, 1), np.float32)
    shared.sum_partials(partial.copy(), contiguous)
    holder = np.full((groups * Dg, depth, 1, 2), 7.0, np.float32)
    strided = holder[:, :, :, :1]
    shared.sum_partials(partial.copy(), strided)
    np.testing.assert_array_equal(strided, contiguous)
    assert (holder[:, :, :, 1] == 7.0).all()
    expected = partial.astype(np.float64).sum(0).transpose(0, 2, 1).reshape(groups * Dg, depth)
    np.testing.assert_allclose(contiguous.reshape(groups * Dg, depth), expected, rtol=1e-5, atol=1e-5)


def test_max_pool_without_positions_writes_no_placeholder(rng):
    """Pooling without recorded positions runs both 2x2 kernels (blocks, then one at a time after a NaN) on the
    shared placeholder: it stays zero, and the values equal the recorded run's."""
    x = rng.standard_normal((2, 3, 8, 12)).astype(np.float32)
    recorded, where = np.empty((2, 3, 4, 6), np.float32), np.empty((2, 3, 4, 6), np.int64)
    pool.max_pool2d_forward_2x2(x, recorded, where)
    for source in (x, np.where(rng.random(x.shape) < 0.05, np.float32(np.nan), x)):
        values, with_positions = np.empty_like(recorded), np.empty_like(recorded)
        pool.max_pool2d_forward_2x2(source, values, np.empty((0, 3, 4, 6), np.int64))
        pool.max_pool2d_forward_2x2(source, with_positions, where)
        np.testing.assert_array_equal(values, with_positions)
        assert (pool._NOT_RECORDED == 0).all()


_SPIN_CHILD = _CHILD[:_CHILD.index("import numpy as np")] + r"""
from nbconv.kernels.cpu import threads
threads.compile_wait()
print(json.dumps({"subroutines": subroutines, "overloads": overloads}))
"""


def test_the_kernel_threads_wait_compiles_nothing_of_numba_besides_itself(tmp_path):
    """spin.reached, which every parallel call compiles or loads, makes Numba compile none of its own helpers
    (array expressions such as .any() or a slice assignment would, in every process)."""
    import json
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", _SPIN_CHILD], env=env, capture_output=True, text=True, check=True)
    compiled = json.loads(out.stdout.strip().splitlines()[-1])
    assert not compiled["overloads"] and not compiled["subroutines"], compiled
