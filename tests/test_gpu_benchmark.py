"""benchmarks/gpu.py: its no-GPU path, and the PyTorch twins of the networks it times."""
import os
import subprocess
import sys

import pytest

from nbconv import backend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(backend._driver_library_present(), reason="a GPU is present: the script would run in full")
def test_without_a_gpu_it_says_so_and_exits_0():
    completed = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "gpu.py")], capture_output=True,
                               text=True, timeout=300, env=dict(os.environ, NUMBA_ENABLE_CUDASIM="1"))
    assert completed.returncode == 0, completed.stderr
    assert "no usable GPU here" in completed.stdout


def test_torch_twins_have_the_same_layers_and_parameter_counts():
    torch = pytest.importorskip("torch")
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        import gpu
    finally:
        sys.path.pop(0)
    from nbconv import models
    for spec, shape, convolutions in (("lenet5", (1, 28, 28), 2), (gpu.RESNET20_SIZED, (3, 32, 32), 19)):
        model = models.build(spec, input_shape=shape, seed=0)
        twin = gpu._torch_twin(torch, model, shape)
        assert sum(p.value.size for p in model.parameters()) == sum(p.numel() for p in twin.parameters())
        assert sum(isinstance(layer, torch.nn.Conv2d) for layer in twin) == convolutions
        assert twin(torch.zeros((2,) + shape)).shape == (2, 10)
    assert os.environ["NUMBA_ENABLE_CUDASIM"] == "1"  # importing the script leaves the environment alone
