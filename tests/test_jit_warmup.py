"""The cold-cache compile helper of `nbconv train`."""
import glob
import os
import subprocess
import sys

import pytest

from nbconv import jit_warmup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("spec,kinds", [
    ("lenet5", ["conv", "conv-flat", "fc", "flatten", "maxpool", "relu"]),  # 1 -> 6 channels: conv_flat
    ("lenet1", ["avgpool", "conv", "conv-flat", "fc", "flatten", "tanh"]),
    ("conv16k3s2,relu,conv1d4k3,gap,fc2", ["conv-flat", "conv-gemm", "fc", "gap", "relu"]),  # 16 x 3 taps, 4 out
    ("conv9k3,conv8k3,conv4k3", ["conv", "conv-flat"]),  # 9 out, then 9 x 9 = 81 taps: unrolled; 72 taps: flat
    ("conv8k1,sigmoid,dropout0.5,local4k3,lrelu0.1,fc10", ["conv-gemm", "dropout", "fc", "local", "lrelu", "sigmoid"]),
    ("pattern:n=2,m=2,k=1", ["conv", "conv-shift", "fc", "maxpool", "relu"]),  # 1->16, then 16 and 32 channels
    ("conv64k3,conv64k3p1,conv64k3g4", ["conv", "conv-shift"]),  # 64 channels: the weight gradient unrolls
    ("conv32k3,conv32k3g4", ["conv"]),                           # 8 channels a group: unrolled
    ("conv32k3,conv32k3g2", ["conv", "conv-shift"]),             # 16 a group
])
def test_layer_kinds_name_the_backward_kernels_a_model_needs(spec, kinds):
    assert jit_warmup.layer_kinds(spec) == kinds


def test_no_helper_on_the_gpu_or_for_a_bad_spec(monkeypatch):
    monkeypatch.setattr(jit_warmup, "cache_is_cold", lambda: True)
    assert jit_warmup.start("lenet5", device="cuda") is None
    assert jit_warmup.start("conv8k3,nonsense", device="cpu") is None
    jit_warmup.wait(None)
    jit_warmup.stop(None)


def test_helper_fills_the_shared_cache(tmp_path):
    """Run with an empty cache, the helper leaves the kernels it compiled in Numba's cache on disk."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "NUMBA_ENABLE_CUDASIM": "0"}
    result = subprocess.run([sys.executable, "-m", "nbconv.jit_warmup", "maxpool"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert glob.glob(os.path.join(str(tmp_path), "**", "*max_pool2d_backward*.nbi"), recursive=True)
    cold = subprocess.run([sys.executable, "-c", "from nbconv import jit_warmup; print(jit_warmup.cache_is_cold())"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert cold.stdout.strip() == "True"  # the convolution kernels are still uncompiled there
