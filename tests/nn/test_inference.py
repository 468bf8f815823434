"""nn.infer: the same outputs as eval-mode forward (to float32 rounding: batch norm runs as a scale and
shift rounded to the dtype), with batch norm, activations and residual sums applied in place in one pass;
the cached scale and shift follow any change of the weights or running statistics; the input left untouched; no backward after it until forward runs again."""
import gc
import weakref

import numpy as np
import pytest

from nbconv import backend, models, nn

SPECS = {
    "resnet-style": ("conv8k3p1nobias,bn,relu,res[conv8k3p1nobias,bn,relu,conv8k3p1nobias,bn],relu,"
                     "res[conv16k3s2p1nobias,bn,relu,conv16k3p1nobias,bn|conv16k1s2nobias,bn],relu,maxpool2,gap,fc5",
                     (3, 9, 11)),
    "mobilenet-style": ("conv8k3s2p1,bneps0.001,relu6,res[conv16k1nobias,bn,relu6,conv16k3p1g16nobias,bn,relu6,"
                        "conv8k1nobias,bn],conv12k1,bn,gap,dropout0.2,fc4", (3, 13, 7)),
    "fully connected with bn1d": ("flatten,fc12,bn1d,relu,fc3", (2, 3, 3)),
    "branches and norms after them": ("cat[conv4k1,bn,relu|conv4k3p1,relu],bn,relu,res[conv8k1],relu6,gap,fc3",
                                      (3, 5, 6)),
    "block activation inside the residual": ("conv4k3p1,res[conv4k3p1,bn,lrelu0.1,conv4k1,bn],relu,avgpool2,"
                                             "flatten,fc2", (1, 6, 6)),
}


def _model(spec, input_shape, seed=0):
    model = models.build(spec, input_shape=input_shape, seed=seed)
    rng = np.random.default_rng(seed + 1)
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("running_var"):
            state[key] = rng.uniform(0.5, 2.0, value.shape).astype(value.dtype)
        elif key.endswith("num_batches_tracked"):
            state[key] = value
        else:
            state[key] = rng.standard_normal(value.shape).astype(value.dtype)
    model.load_state_dict(state)
    return model.eval()


def _assert_close(got, expected):
    """Equal up to the rounding of a float32 scale and shift (relative to the output's scale)."""
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * float(np.abs(expected).max()))


@pytest.mark.parametrize("name", SPECS)
def test_infer_gives_eval_forward(name, rng):
    spec, input_shape = SPECS[name]
    model = _model(spec, input_shape)
    for batch in (1, 3):
        x = rng.standard_normal((batch,) + input_shape).astype(np.float32)
        kept = x.copy()
        expected = model.forward(x)
        got = nn.infer(model, x)
        _assert_close(got, expected)
        np.testing.assert_array_equal(x, kept)
        np.testing.assert_array_equal(nn.infer(model, x), got)  # nothing it ran in place carried over


def test_infer_matches_a_named_architecture(rng):
    model = models.build("resnet18", (3, 16, 16), num_classes=7, seed=3).eval()
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    _assert_close(nn.infer(model, x), model.forward(x))


def test_cached_scale_and_shift_follow_every_change_of_the_batch_norm(rng):
    spec, input_shape = SPECS["resnet-style"]
    model = _model(spec, input_shape)
    x = rng.standard_normal((2,) + input_shape).astype(np.float32)
    before = nn.infer(model, x)
    norm = model.bn1 if hasattr(model, "bn1") else next(layer for _, layer in model.named_layers()
                                                         if isinstance(layer, nn.BatchNorm2d))
    changes = [lambda: norm.running_var.__setitem__(Ellipsis, norm.running_var * 3),   # in place, by hand
               lambda: norm.running_mean.__setitem__(0, 5.0),
               lambda: norm.weight.value.__setitem__(1, -2.0),
               lambda: setattr(norm.bias, "value", norm.bias.value + 1),                  # a new array
               lambda: setattr(norm, "eps", 0.5),
               lambda: model.load_state_dict({key: value * 0.5 if key.endswith("bias") else value
                                              for key, value in model.state_dict().items()})]
    previous = before
    for change in changes:
        change()
        got = nn.infer(model, x)
        _assert_close(got, model.forward(x))
        assert not np.allclose(got, previous)
        previous = got


def test_backward_after_infer_needs_a_forward_first(rng):
    spec, input_shape = SPECS["resnet-style"]
    model = _model(spec, input_shape)
    x = rng.standard_normal((2,) + input_shape).astype(np.float32)
    output = nn.infer(model, x)
    with pytest.raises(ValueError, match="forward pass first"):
        model.backward(np.ones_like(output))
    output = model.forward(x)
    assert model.backward(np.ones_like(output)).shape == x.shape


def test_training_mode_runs_the_ordinary_forward(rng):
    spec, input_shape = SPECS["resnet-style"]
    model = _model(spec, input_shape).train()
    twin = _model(spec, input_shape).train()
    x = rng.standard_normal((4,) + input_shape).astype(np.float32)
    np.testing.assert_array_equal(nn.infer(model, x), twin.forward(x))  # batch statistics, running ones updated
    np.testing.assert_array_equal(model.state_dict()["bn1.running_mean"], twin.state_dict()["bn1.running_mean"])


@pytest.mark.parametrize("path", ["bn1", "res1.bn2"])
def test_a_layer_switched_to_training_mode_runs_the_ordinary_forward(rng, path):
    """An eval-mode model with one batch norm put back in training mode: infer ran that batch norm with the
    running statistics (a program recorded before the switch, or a new one) while forward used the batch's, and
    left the running statistics unchanged; now infer follows every layer's own mode, and back in eval mode the
    prepared program again."""
    spec, input_shape = SPECS["resnet-style"]
    model, twin = _model(spec, input_shape), _model(spec, input_shape)
    x = rng.standard_normal((4,) + input_shape).astype(np.float32)
    _assert_close(nn.infer(model, x), twin.forward(x))  # a program recorded in eval mode
    model[path].train()
    twin[path].train()
    for _ in range(2):  # the recorded program is stale, then no program is used
        np.testing.assert_array_equal(nn.infer(model, x), twin.forward(x))
    key = path + ".running_mean"
    np.testing.assert_array_equal(model.state_dict()[key], twin.state_dict()[key])
    model[path].eval()
    twin[path].eval()
    _assert_close(nn.infer(model, x), twin.forward(x))


def test_stale_programs_let_go_of_old_weights_when_a_layer_in_training_mode_runs_the_forward(rng):
    """A new weight makes the recorded programs stale; when a layer in training mode then sends infer to the
    ordinary forward, the stale programs (which hold the old weight) are dropped as a new recording drops them."""
    spec, input_shape = SPECS["resnet-style"]
    model = _model(spec, input_shape)
    x = rng.standard_normal((2,) + input_shape).astype(np.float32)
    nn.infer(model, x)
    old = weakref.ref(model["conv1"].weight.value)
    model["conv1"].weight.value = model["conv1"].weight.value.copy()
    model["bn1"].train()
    np.testing.assert_array_equal(nn.infer(model, x), model.forward(x))
    gc.collect()
    assert old() is None, "a stale program kept the replaced weight alive"


def test_infer_on_the_cuda_backend_matches_the_cpu(rng):
    if not backend.cuda_status()[0]:
        pytest.skip("no CUDA backend (real or simulated)")
    input_shape = (2, 4, 3)  # the simulator runs a thread per element: keep it tiny
    model = _model("conv3k3p1nobias,bn,relu6,res[conv3k1nobias,bn],relu,gap,fc2", input_shape)
    x = rng.standard_normal((2,) + input_shape).astype(np.float32)
    expected = nn.infer(model, x)
    model.to("cuda")
    got = backend.to_host(nn.infer(model, backend.to_device(x)))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_prepared_convolution_weights_follow_every_change_of_the_weight(rng):
    from nbconv import optim
    from nbconv.kernels.cpu.conv.plan import plan
    model = _model("conv32k3p1nobias,bn,relu,conv8k1,gap,fc3", (32, 5, 21))  # a Winograd layer, then pointwise
    convolution = model.layers[0]
    assert plan("forward", (2, 32, 5, 21), convolution.weight.shape, 1, 1, 1, 1).algorithm == "winograd"
    x = rng.standard_normal((2, 32, 5, 21)).astype(np.float32)
    previous = nn.infer(model, x)
    _assert_close(previous, model.forward(x))
    steps = [lambda: (convolution.weight.value.__setitem__((0, 0), 3.0), convolution.weight.mark_changed()),
             lambda: setattr(convolution.weight, "value", convolution.weight.value * 0.5),
             lambda: model.load_state_dict({key: value * 1.5 if key.endswith("weight") else value
                                            for key, value in model.state_dict().items()})]
    optimizer = optim.SGD([parameter for parameter in model.parameters()], lr=0.5)

    def optimizer_step():
        output = model.forward(x)
        model.backward(np.ones_like(output))
        optimizer.step()
    for step in steps + [optimizer_step]:
        version = convolution.weight.version
        step()
        assert convolution.weight.version > version
        got = nn.infer(model, x)
        _assert_close(got, model.eval().forward(x))
        assert not np.allclose(got, previous)
        previous = got


def test_prepared_convolution_with_a_non_finite_weight_follows_the_definition(rng):
    model = _model("conv32k3p1nobias,relu,gap,fc3", (32, 4, 21))
    model.layers[0].weight.value[1, 2, 0, 0] = np.inf
    model.layers[0].weight.mark_changed()
    x = rng.standard_normal((1, 32, 4, 21)).astype(np.float32)
    x[0, 2, :, :] = 0  # an inf weight that meets only zeros and the padding: NaN by the definition
    np.testing.assert_array_equal(nn.infer(model, x), model.forward(x))
    assert np.isnan(nn.infer(model, x)).all()


def test_infer_beside_convolutions_on_other_threads_gives_its_own_results(rng):
    """nn.infer's convolutions (which keep prepared weights) share the scratch memory with every other
    convolution call: run at once from several threads, with shapes that need the same scratch slots at
    different sizes, each gets the results it gets alone."""
    import threading

    import nbconv.functional as F
    model = _model(*SPECS["resnet-style"])
    images = [rng.standard_normal((batch, 3, 9, 11)).astype(np.float32) for batch in (1, 5)]
    expected = [nn.infer(model, x) for x in images]
    x_other = rng.standard_normal((7, 8, 13, 12)).astype(np.float32)
    w_other = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    expected_other = F.conv2d(x_other, w_other, padding=1)
    failures, start = [], threading.Barrier(3)

    def infer(index):
        start.wait()
        for _ in range(25):
            if not np.array_equal(nn.infer(model, images[index]), expected[index]):
                failures.append(index)

    def convolve():
        start.wait()
        for _ in range(25):
            if not np.array_equal(F.conv2d(x_other, w_other, padding=1), expected_other):
                failures.append("conv2d")
    threads = [threading.Thread(target=infer, args=(0,)), threading.Thread(target=infer, args=(1,)),
               threading.Thread(target=convolve)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures


@pytest.mark.parametrize("model", [None, "conv4k3", np.zeros(3)])
def test_infer_on_something_else_than_a_model_is_a_type_error_naming_it(model):
    with pytest.raises(TypeError, match=f"model must be an nbconv layer or model .*got {type(model).__name__}"):
        nn.infer(model, np.zeros((1, 3, 8, 8), np.float32))
