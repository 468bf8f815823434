"""The lecture's architectures by name: torchvision's parameter counts and names, any admitted input size,
build-time shape errors, and a round trip through a checkpoint."""
import numpy as np
import pytest

from nbconv import architectures, checkpoint, models

TORCHVISION_PARAMETERS = {"alexnet": 61_100_840, "vgg11": 132_863_336, "vgg16": 138_357_544,
                          "vgg11_bn": 132_868_840, "vgg16_bn": 138_365_992, "googlenet": 6_624_904,
                          "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032}


def _count(model):
    return sum(parameter.value.size for parameter in model.parameters())


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMETERS))
def test_parameter_counts_equal_torchvision(name):
    model = models.build(name, input_shape=(3, 224, 224), num_classes=1000)
    assert _count(model) == TORCHVISION_PARAMETERS[name]
    assert model.spec() == name


def test_cifar_resnets_follow_he_et_al():
    resnet20 = models.build("resnet20", input_shape=(3, 32, 32))
    resnet56 = models.build("resnet56", input_shape=(3, 32, 32))
    convolutions = lambda model: [key for key in model.state_dict() if key.endswith("weight")  # noqa: E731
                                  and model.state_dict()[key].ndim == 4 and "downsample" not in key]
    assert len(convolutions(resnet20)) + 1 == 20 and len(convolutions(resnet56)) + 1 == 56  # 6n+2 weighted layers
    assert _count(resnet20) == 272_474 and _count(resnet56) == 855_770  # option B shortcuts: the paper's 0.27M/0.85M
    assert resnet20.state_dict()["layer2.0.downsample.0.weight"].shape == (32, 16, 1, 1)
    assert "layer1.0.downsample.0.weight" not in resnet20.state_dict()  # identity where the shape stays


def test_state_dict_names_are_torchvisions():
    state = models.build("resnet18", input_shape=(3, 64, 64), num_classes=7).state_dict()
    assert len(state) == 122  # torchvision's resnet18 state dict: 62 parameters, 60 buffers
    assert state["fc.weight"].shape == (7, 512) and state["conv1.weight"].shape == (64, 3, 7, 7)
    assert state["layer2.0.downsample.1.running_var"].shape == (128,)
    assert state["bn1.num_batches_tracked"].dtype == np.int64 and state["bn1.num_batches_tracked"].shape == ()
    assert state["layer4.1.bn2.weight"].shape == (512,)
    bottleneck = models.build("resnet50", input_shape=(3, 32, 32), num_classes=3).state_dict()
    assert bottleneck["layer1.0.conv3.weight"].shape == (256, 64, 1, 1)
    assert bottleneck["layer3.0.conv2.weight"].shape == (256, 256, 3, 3)
    inception = models.build("googlenet", input_shape=(3, 64, 64), num_classes=5).state_dict()
    assert inception["inception3a.branch1.conv.weight"].shape == (64, 192, 1, 1)
    assert inception["inception3a.branch3.1.conv.weight"].shape == (32, 16, 3, 3)  # torchvision's 3x3 "5x5"
    assert inception["inception5b.branch4.1.bn.running_mean"].shape == (128,)
    assert "conv1.conv.bias" not in inception and inception["fc.weight"].shape == (5, 1024)


@pytest.mark.parametrize("name,shape", [("resnet18", (3, 40, 56)), ("googlenet", (3, 48, 48)),
                                        ("resnet20", (3, 17, 23)), ("resnet50", (3, 16, 16))])
def test_any_input_size_the_topology_admits(name, shape, rng):
    model = models.build(name, input_shape=shape, num_classes=4).eval()
    output = model.forward(rng.standard_normal((1,) + shape).astype(np.float32))
    assert output.shape == (1, 4) and np.isfinite(output).all()


@pytest.mark.parametrize("name,shape,message", [
    ("alexnet", (3, 32, 32), r"alexnet does not admit input of shape \(3, 32, 32\): layer features.12 "
                             r"\(maxpool3s2\) does not fit its input of shape \(256, 1, 1\)"),
    ("resnet20", (3, 32), r"input_shape must be \(C, H, W\)"),
])
def test_inputs_the_topology_does_not_admit_fail_at_build(name, shape, message):
    with pytest.raises(ValueError, match=message):
        models.build(name, input_shape=shape)


def test_architecture_options_are_checked():
    with pytest.raises(ValueError, match="resnet20 options are classes=N; got 'width=3'"):
        models.build("resnet20:width=3", input_shape=(3, 32, 32))
    with pytest.raises(ValueError, match="classes must be an int >= 1"):
        models.build("resnet20", input_shape=(3, 32, 32), num_classes=0)
    assert architectures.parse_name("resnet20:classes=100") == ("resnet20", {"classes": 100})
    assert architectures.parse_name("conv8k3,relu") == (None, {})


def test_named_architecture_round_trips_through_a_checkpoint(tmp_path, rng):
    model = models.build("resnet20", input_shape=(3, 16, 16), num_classes=100, seed=3)
    model.train()
    model.forward(rng.standard_normal((4, 3, 16, 16)).astype(np.float32))  # moves the running statistics
    assert model.spec() == "resnet20:classes=100"
    path = str(tmp_path / "resnet20.npz")
    checkpoint.save(path, model, (3, 16, 16))
    loaded = checkpoint.load(path).model
    assert loaded.spec() == model.spec()
    original, restored = model.state_dict(), loaded.state_dict()
    assert sorted(original) == sorted(restored) and original["bn1.num_batches_tracked"] == 1
    for key in original:
        np.testing.assert_array_equal(restored[key], original[key], err_msg=key)
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(loaded.eval().forward(x), model.eval().forward(x), rtol=1e-6)


def test_weights_from_npz_load_strictly_and_never_unpickle(tmp_path):
    source = models.build("resnet20", input_shape=(3, 8, 8), seed=1)
    target = models.build("resnet20", input_shape=(3, 8, 8), seed=2)
    path = tmp_path / "weights.npz"
    np.savez(path, **source.state_dict())
    assert models.load_weights(target, str(path)) == ([], [])
    for key, value in source.state_dict().items():
        np.testing.assert_array_equal(target.state_dict()[key], value)
    np.savez(path, **{**source.state_dict(), "extra": np.zeros(2)})
    with pytest.raises(ValueError, match=r"unexpected keys \['extra'\]"):
        models.load_weights(target, str(path))
    assert models.load_weights(target, str(path), strict=False).unexpected_keys == ["extra"]
    np.savez(path, **{"conv1.weight": np.array([object()] * 3)})
    with pytest.raises(ValueError, match="holds Python objects") as error:
        models.load_weights(target, str(path))
    assert "allow_pickle" not in str(error.value)
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="is not a .npz file"):
        models.load_weights(target, str(tmp_path / "junk.npz"))


@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e300])  # 1e300 is infinity in float32
def test_weights_holding_nan_infinity_or_values_past_float32_are_refused_naming_them(bad, tmp_path):
    target = models.build("conv4k3,relu,gap,fc3", input_shape=(3, 8, 8), num_classes=3)
    before = target.state_dict()
    state = {key: value.astype(np.float64) for key, value in before.items()}
    state["fc1.weight"][1, 2] = bad
    np.savez(tmp_path / "w.npz", **state)
    with pytest.raises(ValueError, match="w.npz: array 'fc1.weight' holds NaN or infinity, or values past float32"):
        models.load_weights(target, str(tmp_path / "w.npz"))
    for key, value in target.state_dict().items():  # nothing was loaded
        np.testing.assert_array_equal(value, before[key])


def test_weights_are_read_only_up_to_the_size_the_models_shapes_need(tmp_path):
    import tracemalloc
    target = models.build("conv4k3,relu,gap,fc3", input_shape=(3, 8, 8), num_classes=3)
    state = target.state_dict()
    bomb = np.zeros(1 << 24, np.float32)  # 64 MB that deflate squeezes to about 64 KB
    for name, entries in (("shape", {**state, "conv1.weight": bomb}), ("extra", {**state, "extra": bomb})):
        path = tmp_path / f"{name}.npz"
        np.savez_compressed(path, **entries)
        assert path.stat().st_size < 1 << 20
        tracemalloc.start()
        if name == "shape":
            with pytest.raises(ValueError, match="'conv1.weight' declares 67,108,992 bytes, more than"):
                models.load_weights(target, str(path))
        else:
            assert models.load_weights(target, str(path), strict=False).unexpected_keys == ["extra"]
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 8 << 20, peak


@pytest.mark.parametrize("method", ["ZIP_BZIP2", "ZIP_LZMA"])
@pytest.mark.parametrize("entry", ["fc1.weight", "extra"])
def test_weights_compressed_with_bzip2_or_lzma_are_refused_before_any_is_read(method, entry, tmp_path, monkeypatch):
    """zipfile inflates those without a bound whatever size an entry declares (checkpoint.load refuses them
    alike): refused from the archive's directory, naming the entry and its method, nothing read or loaded."""
    import io
    import zipfile
    target = models.build("conv4k3,relu,gap,fc3", input_shape=(3, 8, 8), num_classes=3)
    before = target.state_dict()
    path = tmp_path / "w.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for key, value in {**before, "extra": np.zeros(2, np.float32)}.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, value)
            archive.writestr(key + ".npy", buffer.getvalue(),
                             compress_type=getattr(zipfile, method) if key == entry else zipfile.ZIP_STORED)
    monkeypatch.setattr(zipfile.ZipFile, "read", lambda *args: pytest.fail("an entry was read"))
    for strict in (True, False):
        with pytest.raises(ValueError, match=rf"w.npz is not a .npz file of named arrays: entry '{entry}' uses "
                                             rf"compression method {getattr(zipfile, method)}; nbconv reads"):
            models.load_weights(target, str(path), strict=strict)
    for key, value in target.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
