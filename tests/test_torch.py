"""nbconv.torch: nbconv's kernels as PyTorch autograd Functions and modules, checked against torch.nn on
the CPU (forward, backward, finite differences through torch.autograd.gradcheck, a few training steps)."""
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nbt = pytest.importorskip("nbconv.torch")


def _forward_backward(module, input):
    input = input.clone().requires_grad_(True)
    output = module(input)
    weights = torch.linspace(-1, 1, output.numel(), dtype=output.dtype).reshape(output.shape)
    (output * weights).sum().backward()  # a non-uniform output gradient
    grads = {name: parameter.grad.clone() for name, parameter in module.named_parameters()}
    return output.detach(), input.grad, grads


def _assert_same_as_torch(ours, theirs, input, tolerance=1e-4):
    theirs.load_state_dict(ours.state_dict())
    expected, got = _forward_backward(theirs, input), _forward_backward(ours, input)
    torch.testing.assert_close(got[0], expected[0], rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(got[1], expected[1], rtol=tolerance, atol=tolerance)
    assert got[2].keys() == expected[2].keys()
    for name in expected[2]:
        torch.testing.assert_close(got[2][name], expected[2][name], rtol=tolerance, atol=tolerance, msg=name)


@pytest.mark.parametrize("options", [dict(kernel_size=3, padding=1),
                                     dict(kernel_size=(3, 2), stride=(2, 1), padding=(2, 0), dilation=(1, 2),
                                          groups=2, bias=False),
                                     dict(kernel_size=4, padding="same"),
                                     dict(kernel_size=3, groups=4)])
def test_conv2d_matches_torch(options):
    torch.manual_seed(0)
    ours = nbt.Conv2d(4, 8, **options)
    _assert_same_as_torch(ours, torch.nn.Conv2d(4, 8, **options), torch.randn(2, 4, 9, 7))


def test_a_lazily_negated_input_gives_torchs_result():
    torch.manual_seed(2)
    # z.conj().imag is strided, and .contiguous() copies it out with its sign; a contiguous lazy negation (views of
    # one keep the bit) was read as it lies in memory
    negated = torch._neg_view(torch.randn(2, 4, 9, 7))
    assert negated.is_neg() and negated.is_contiguous()
    ours, theirs = nbt.Conv2d(4, 8, 3), torch.nn.Conv2d(4, 8, 3)
    theirs.load_state_dict(ours.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(ours(negated), theirs(negated), rtol=1e-4, atol=1e-4)


def test_conv1d_linear_and_relu_match_torch():
    torch.manual_seed(1)
    _assert_same_as_torch(nbt.Conv1d(3, 5, 3, stride=2, padding=1), torch.nn.Conv1d(3, 5, 3, stride=2, padding=1),
                          torch.randn(2, 3, 11))
    _assert_same_as_torch(nbt.Linear(7, 4), torch.nn.Linear(7, 4), torch.randn(5, 7))
    _assert_same_as_torch(nbt.ReLU(), torch.nn.ReLU(), torch.randn(3, 4, 5))


@pytest.mark.parametrize("options", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)])
def test_pools_match_torch(options):
    torch.manual_seed(2)
    input = torch.randn(2, 3, 9, 8)
    _assert_same_as_torch(nbt.MaxPool2d(**options), torch.nn.MaxPool2d(**options), input)
    for count_include_pad in (True, False):
        _assert_same_as_torch(nbt.AvgPool2d(count_include_pad=count_include_pad, **options),
                              torch.nn.AvgPool2d(count_include_pad=count_include_pad, **options), input)


def test_gradients_match_finite_differences():
    torch.manual_seed(3)
    input = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: nbt.conv2d(x, w, b, stride=(1, 2), padding=1),
                                    (input, weight, bias))
    assert torch.autograd.gradcheck(lambda x: nbt.avg_pool2d(x, 3, 2, 1, True, False), (input,))


def test_outputs_share_nbconvs_memory_and_inputs_are_not_copied(monkeypatch):
    import nbconv.functional as F
    calls = []
    original = F.relu

    def relu(input):
        calls.append((input, original(input)))
        return calls[-1][1]
    monkeypatch.setattr(F, "relu", relu)
    input = torch.randn(2, 3, 6, 6)
    output = nbt.relu(input)
    given, returned = calls[0]
    assert given.ctypes.data == input.data_ptr()      # the input was viewed, not copied
    assert output.data_ptr() == returned.ctypes.data  # the output tensor is nbconv's output array


def test_unsupported_options_are_refused():
    with pytest.raises(ValueError, match="padding_mode='zeros'"):
        nbt.Conv2d(1, 1, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="dilation=1"):
        nbt.MaxPool2d(2, dilation=2)
    with pytest.raises(ValueError, match="dilation=1"):
        nbt.MaxPool2d(2, dilation=(1, 2))
    x = torch.randn(1, 2, 6, 6)
    torch.testing.assert_close(nbt.MaxPool2d(2, dilation=(1, 1))(x), torch.nn.MaxPool2d(2)(x))  # the same as 1
    with pytest.raises(TypeError, match="dtype"):
        nbt.relu(torch.arange(4))


def _lenet(conv, pool, relu, linear):
    return torch.nn.Sequential(conv(1, 4, 5, padding=2), relu(), pool(2), conv(4, 8, 5), relu(), pool(2),
                               torch.nn.Flatten(), linear(8 * 5 * 5, 10))


def test_a_few_training_steps_follow_torch():
    torch.manual_seed(4)
    ours = _lenet(nbt.Conv2d, nbt.MaxPool2d, nbt.ReLU, nbt.Linear)
    theirs = _lenet(torch.nn.Conv2d, torch.nn.MaxPool2d, torch.nn.ReLU, torch.nn.Linear)
    theirs.load_state_dict(copy.deepcopy(ours.state_dict()))
    images, labels = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    losses = {}
    for name, model in (("ours", ours), ("theirs", theirs)):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        losses[name] = []
        for _ in range(4):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()
            losses[name].append(loss.item())
    np.testing.assert_allclose(losses["ours"], losses["theirs"], rtol=1e-4)
    assert losses["ours"][-1] < losses["ours"][0]
    for (name, mine), theirs_parameter in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(mine, theirs_parameter, rtol=1e-3, atol=1e-4, msg=name)
