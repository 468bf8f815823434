"""ResNet-18, VGG-11 with batch norm and GoogLeNet against PyTorch twins written here in plain torch.nn with
torchvision's module names: the weights go across by state dict (strict, so the names and shapes are
torchvision's), then forward outputs, input gradients, parameter gradients and updated running statistics
must agree, in eval and in training mode. Skipped without torch."""
import numpy as np
import pytest

from nbconv import models

torch = pytest.importorskip("torch")
tnn = torch.nn


# ----------------------------------------------------------------------------- the PyTorch twins

class BasicBlock(tnn.Module):
    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = tnn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(planes)
        self.relu = tnn.ReLU()
        self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = tnn.Sequential(tnn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                             tnn.BatchNorm2d(planes))

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet18(tnn.Module):
    def __init__(self, classes):
        super().__init__()
        self.conv1 = tnn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = tnn.BatchNorm2d(64)
        self.relu = tnn.ReLU()
        self.maxpool = tnn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for index, planes in enumerate((64, 128, 256, 512)):
            stride = 1 if index == 0 else 2
            setattr(self, f"layer{index + 1}", tnn.Sequential(BasicBlock(inplanes, planes, stride),
                                                              BasicBlock(planes, planes)))
            inplanes = planes
        self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
        self.fc = tnn.Linear(512, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class VGG11BN(tnn.Module):
    def __init__(self, classes):
        super().__init__()
        layers, channels = [], 3
        for item in [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]:
            if item == "M":
                layers.append(tnn.MaxPool2d(2, 2))
            else:
                layers += [tnn.Conv2d(channels, item, 3, padding=1), tnn.BatchNorm2d(item), tnn.ReLU()]
                channels = item
        self.features = tnn.Sequential(*layers)
        self.avgpool = tnn.AdaptiveAvgPool2d((7, 7))
        self.classifier = tnn.Sequential(tnn.Linear(512 * 7 * 7, 4096), tnn.ReLU(), tnn.Dropout(),
                                         tnn.Linear(4096, 4096), tnn.ReLU(), tnn.Dropout(), tnn.Linear(4096, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class BasicConv2d(tnn.Module):
    def __init__(self, c, d, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = tnn.Conv2d(c, d, kernel_size, stride, padding, bias=False)
        self.bn = tnn.BatchNorm2d(d, eps=0.001)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class Inception(tnn.Module):
    def __init__(self, c, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
        super().__init__()
        self.branch1 = BasicConv2d(c, ch1x1, 1)
        self.branch2 = tnn.Sequential(BasicConv2d(c, ch3x3red, 1), BasicConv2d(ch3x3red, ch3x3, 3, padding=1))
        self.branch3 = tnn.Sequential(BasicConv2d(c, ch5x5red, 1), BasicConv2d(ch5x5red, ch5x5, 3, padding=1))
        self.branch4 = tnn.Sequential(tnn.MaxPool2d(3, 1, 1, ceil_mode=True), BasicConv2d(c, pool_proj, 1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class GoogLeNet(tnn.Module):
    def __init__(self, classes):
        super().__init__()
        self.conv1 = BasicConv2d(3, 64, 7, 2, 3)
        self.maxpool1 = tnn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, 1)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1)
        self.maxpool2 = tnn.MaxPool2d(3, 2, ceil_mode=True)
        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = tnn.MaxPool2d(3, 2, ceil_mode=True)
        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = tnn.MaxPool2d(2, 2, ceil_mode=True)
        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)
        self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
        self.dropout = tnn.Dropout(0.2)
        self.fc = tnn.Linear(1024, classes)

    def forward(self, x):
        x = self.maxpool2(self.conv3(self.conv2(self.maxpool1(self.conv1(x)))))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        for name in ("4a", "4b", "4c", "4d", "4e"):
            x = getattr(self, f"inception{name}")(x)
        x = self.inception5b(self.inception5a(self.maxpool4(x)))
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


# ----------------------------------------------------------------------------- the comparison

def _close(actual, expected, tolerance, what):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, what
    scale = max(np.abs(expected).max(), 1e-12)
    assert np.abs(actual - expected).max() <= tolerance * scale, f"{what}: max error " \
        f"{np.abs(actual - expected).max():.3g} against a scale of {scale:.3g}"


def _randomise_statistics(model, rng):
    """Running statistics and affine weights away from their initial 0/1, so eval mode tests something."""
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("running_mean") or key.endswith(".bias") and value.ndim == 1 and "fc" not in key:
            state[key] = (0.1 * rng.standard_normal(value.shape)).astype(value.dtype)
        elif key.endswith("running_var") or ("bn" in key or "features" in key) and key.endswith("weight") \
                and value.ndim == 1:
            state[key] = rng.uniform(0.5, 1.5, value.shape).astype(value.dtype)
    model.load_state_dict(state, strict=False)


def _dropout_off(nbconv_model, torch_model):
    """Dropout draws different masks in the two engines: both run it as the identity."""
    def walk(layer):
        if type(layer).__name__ == "Dropout":
            layer.train(False)
        for _, child in layer.children():
            walk(child)
    walk(nbconv_model)
    for module in torch_model.modules():
        if isinstance(module, tnn.Dropout):
            module.eval()


TWINS = [("resnet18", ResNet18, (3, 64, 64), np.float64, 1e-9),
         ("googlenet", GoogLeNet, (3, 64, 64), np.float64, 1e-9),
         ("vgg11_bn", VGG11BN, (3, 32, 32), np.float32, 2e-4)]


@pytest.mark.parametrize("name,twin,shape,dtype,tolerance", TWINS, ids=[twin[0] for twin in TWINS])
def test_network_equals_its_pytorch_twin(name, twin, shape, dtype, tolerance):
    rng = np.random.default_rng(7)
    classes = 6
    model = models.build(name, input_shape=shape, num_classes=classes, seed=1, dtype=dtype)
    _randomise_statistics(model, rng)
    reference = twin(classes).to(torch.float64 if dtype == np.float64 else torch.float32)
    reference.load_state_dict({key: torch.from_numpy(value) for key, value in model.state_dict().items()},
                              strict=True)  # torchvision's names and shapes, or this fails
    x = rng.standard_normal((2,) + shape).astype(dtype)
    for training in (False, True):
        model.train(training)
        reference.train(training)
        _dropout_off(model, reference)
        before = model.state_dict()
        output = model.forward(x)
        grad_output = rng.standard_normal(output.shape).astype(dtype)
        grad_input = model.backward(grad_output)
        x_torch = torch.from_numpy(x.copy()).requires_grad_(True)
        reference.zero_grad()
        expected = reference(x_torch)
        expected.backward(torch.from_numpy(grad_output))
        mode = "train" if training else "eval"
        _close(output, expected.detach().numpy(), tolerance, f"{name} {mode} output")
        _close(grad_input, x_torch.grad.numpy(), tolerance * 10, f"{name} {mode} input gradient")
        parameters = dict(reference.named_parameters())
        for key, parameter in model.named_parameters().items():
            expected_grad = parameters[key].grad.numpy()
            weight_scale = np.abs(parameters[key.replace(".bias", ".weight")].grad.numpy()).max()
            if training and key.endswith(".bias") and np.abs(expected_grad).max() < 1e-4 * weight_scale:
                # a convolution's bias before batch norm: its gradient is zero, both sides give rounding noise
                assert np.abs(parameter.grad).max() < 1e-3 * weight_scale, f"{name} {key} gradient is not zero"
                continue
            _close(parameter.grad, expected_grad, tolerance * 10, f"{name} {mode} {key} gradient")
        after, torch_state = model.state_dict(), reference.state_dict()
        for key in after:
            if "running" in key or "num_batches" in key:
                _close(after[key], torch_state[key].numpy(), tolerance, f"{name} {mode} {key}")
        if training:  # the batch statistics moved the running ones
            first = next(key for key in after if key.endswith("running_mean"))
            assert not np.array_equal(after[first], before[first]) and after[first.replace("mean", "var")].all()
