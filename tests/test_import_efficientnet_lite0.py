"""scripts/import_efficientnet_lite0.py without the download: its reader of legacy PyTorch files (against
torch.save, and refusing anything but tensors), and its EfficientNet-Lite0 spec and weight mapping."""
import importlib.util
import io
import os
import pickle

import numpy as np
import pytest

from nbconv import models

_PATH = os.path.join(os.path.dirname(__file__), "..", "scripts", "import_efficientnet_lite0.py")
_spec = importlib.util.spec_from_file_location("import_efficientnet_lite0", _PATH)
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)


def test_reads_a_legacy_torch_file_as_torch_wrote_it():
    torch = pytest.importorskip("torch")
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(4, 6, generator=generator)
    state = {"conv.weight": torch.randn(3, 2, 5, 5, generator=generator), "bn.num_batches_tracked": torch.tensor(7),
             "view.weight": base[1:3, ::2], "transposed.weight": base.t()}
    buffer = io.BytesIO()
    torch.save(state, buffer, _use_new_zipfile_serialization=False)
    arrays = script.read_legacy_torch_state(buffer.getvalue())
    assert sorted(arrays) == sorted(state)
    for key, tensor in state.items():
        np.testing.assert_array_equal(arrays[key], tensor.numpy())
        assert arrays[key].dtype == tensor.numpy().dtype


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo unpickled",))


def test_refuses_anything_but_tensors():
    stream = io.BytesIO()
    for record in (0x1950a86a20f9469cfc6c, 1001, {"little_endian": True}):
        pickle.dump(record, stream, protocol=2)
    pickle.dump({"weight": _Payload()}, stream, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        script.read_legacy_torch_state(stream.getvalue())
    with pytest.raises(ValueError, match="magic"):
        script.read_legacy_torch_state(pickle.dumps(12345, protocol=2))


def _source_shapes():
    """The weight file's names and shapes, as EfficientNet-PyTorch names an EfficientNet-Lite0."""
    shapes = {"_conv_stem.weight": (32, 3, 3, 3)}
    shapes.update({f"_bn0.{field}": (32,) for field in ("weight", "bias", "running_mean", "running_var")})
    channels, block = 32, 0
    for repeats, kernel, first_stride, expansion, out_channels in script.STAGES:
        for _ in range(repeats):
            hidden, prefix = channels * expansion, f"_blocks.{block}."
            convs = {"_depthwise_conv": (hidden, 1, kernel, kernel), "_project_conv": (out_channels, hidden, 1, 1)}
            norms = {"_bn1": hidden, "_bn2": out_channels}
            if expansion != 1:
                convs["_expand_conv"] = (hidden, channels, 1, 1)
                norms["_bn0"] = hidden
            shapes.update({prefix + name + ".weight": shape for name, shape in convs.items()})
            shapes.update({f"{prefix}{name}.{field}": (size,) for name, size in norms.items()
                           for field in ("weight", "bias", "running_mean", "running_var")})
            channels, block = out_channels, block + 1
    shapes["_conv_head.weight"] = (1280, 320, 1, 1)
    shapes.update({f"_bn1.{field}": (1280,) for field in ("weight", "bias", "running_mean", "running_var")})
    shapes.update({"_fc.weight": (1000, 1280), "_fc.bias": (1000,)})
    return shapes


def test_spec_and_mapping_give_efficientnet_lite0():
    text, sources = script.spec()
    model = models.build(text, input_shape=(3, 224, 224))
    rng = np.random.default_rng(0)
    source = {key: rng.standard_normal(shape).astype(np.float32) for key, shape in _source_shapes().items()}
    state = script.nbconv_state(model, sources, source)
    model.load_state_dict(state)
    parameters = sum(value.size for key, value in model.state_dict().items()
                     if "running" not in key and "num_batches" not in key)
    assert parameters == 4_652_008
    assert model.output_shape((3, 224, 224)) == (1000,)
    np.testing.assert_array_equal(model["res1.conv2"].weight.value, source["_blocks.2._depthwise_conv.weight"])
    np.testing.assert_array_equal(model["bn22"].running_var, source["_bn1.running_var"])
    with pytest.raises(SystemExit, match="weights not used"):
        script.nbconv_state(model, sources, dict(source, extra=np.zeros(1, np.float32)))
