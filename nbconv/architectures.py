"""The lecture's architectures by name: AlexNet, VGG-11/16 (with and without batch norm), GoogLeNet
(Inception v1), ResNet-18/34/50 as torchvision builds them, and the CIFAR ResNet-20/56 of He et al. 2016.

For the torchvision architectures, layer names, parameter names and shapes are torchvision's, so that a
torchvision state dict saved as .npz loads with strict=True (`model.load_state_dict(dict(np.load(path,
allow_pickle=False)))`). Differences: the weights start from nbconv's He initialisation, not torchvision's;
ResNet's and GoogLeNet's final adaptive average pooling to 1x1 is a global average pool (the same values);
GoogLeNet has no auxiliary heads and no `transform_input` (torchvision's defaults when built from scratch).

CIFAR ResNets (section 4.2): 3x3 convolutions of 16, 32, 64 filters in three stages of n blocks
(n = 3 for ResNet-20, 9 for ResNet-56), global average pooling and one fully connected layer. Where a block
halves the size and doubles the channels, its shortcut is a 1x1 convolution with stride 2 and batch norm
(the paper's option B; identity shortcuts elsewhere): ResNet-20 has 272,474 parameters with 10 classes
(the paper's option A, parameter-free zero padding, has 0.27M).
"""
import numpy as np

from . import nn

DEFAULT_CLASSES = 1000
CIFAR_DEFAULT_CLASSES = 10


class _Maker:
    """Layer constructors sharing one random generator and dtype, naming each layer as it is made."""

    def __init__(self, seed, dtype):
        self.rng, self.dtype = np.random.default_rng(seed), dtype

    def conv(self, name, c, d, k, stride=1, padding=0, bias=True):
        return _name(nn.Conv2d(c, d, k, stride=stride, padding=padding, bias=bias, rng=self.rng, dtype=self.dtype),
                     name)

    def bn(self, name, c, eps=1e-5):
        return _name(nn.BatchNorm2d(c, eps=eps, dtype=self.dtype), name)

    def linear(self, name, c, d):
        return _name(nn.Linear(c, d, rng=self.rng, dtype=self.dtype), name)

    def dropout(self, name, p):
        return _name(nn.Dropout(p, rng=self.rng), name)


def _name(layer, name):
    layer.name = str(name)
    return layer


def _numbered(layers, name=None):
    """A Sequential whose layers are named 0, 1, 2, ... (torchvision's nn.Sequential)."""
    return nn.Sequential([_name(layer, index) for index, layer in enumerate(layers)], name=name)


def _head(make, features, channels, spatial, classes, dropout_first):
    """torchvision's VGG/AlexNet tail: avgpool (adaptive, to spatial x spatial), flatten, classifier (AlexNet:
    Dropout, Linear, ReLU, Dropout, Linear, ReLU, Linear; VGG: Linear, ReLU, Dropout, Linear, ReLU, Dropout,
    Linear)."""
    width = channels * spatial * spatial
    if dropout_first:
        classifier = [make.dropout("", 0.5), make.linear("", width, 4096), nn.ReLU(), make.dropout("", 0.5),
                      make.linear("", 4096, 4096), nn.ReLU(), make.linear("", 4096, classes)]
    else:
        classifier = [make.linear("", width, 4096), nn.ReLU(), make.dropout("", 0.5), make.linear("", 4096, 4096),
                      nn.ReLU(), make.dropout("", 0.5), make.linear("", 4096, classes)]
    return [features, _name(nn.AdaptiveAvgPool2d((spatial, spatial)), "avgpool"), _name(nn.Flatten(), "flatten"),
            _numbered(classifier, "classifier")]


def alexnet(make, in_channels, classes):
    """torchvision's AlexNet (one-GPU variant of Krizhevsky et al. 2012, without local response norm)."""
    features = _numbered([
        make.conv("", in_channels, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
        make.conv("", 64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        make.conv("", 192, 384, 3, padding=1), nn.ReLU(),
        make.conv("", 384, 256, 3, padding=1), nn.ReLU(),
        make.conv("", 256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2)], "features")
    return _head(make, features, 256, 6, classes, dropout_first=True)


VGG_CONFIGS = {"vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
               "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]}


def vgg(make, in_channels, classes, config, batch_norm):
    """torchvision's VGG (Simonyan and Zisserman 2014): 3x3 convolutions (with bias, then batch norm in the
    _bn variants), ReLU, 2x2 max pooling; a 7x7 adaptive average pool; three fully connected layers."""
    layers, channels = [], in_channels
    for item in VGG_CONFIGS[config]:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        layers.append(make.conv("", channels, item, 3, padding=1))
        if batch_norm:
            layers.append(make.bn("", item))
        layers.append(nn.ReLU())
        channels = item
    return _head(make, _numbered(layers, "features"), channels, 7, classes, dropout_first=False)


def _basic_conv(make, name, c, d, k, stride=1, padding=0):
    """GoogLeNet's BasicConv2d: convolution without bias, batch norm (eps 0.001), ReLU."""
    return nn.Sequential([make.conv("conv", c, d, k, stride, padding, bias=False), make.bn("bn", d, eps=1e-3),
                          _name(nn.ReLU(), "relu")], name=name)


def _inception(make, name, c, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
    """Four branches concatenated: 1x1; 1x1 then 3x3; 1x1 then '5x5' (3x3, as torchvision builds it);
    3x3 max pooling then 1x1."""
    branches = [
        _basic_conv(make, "branch1", c, ch1x1, 1),
        _numbered([_basic_conv(make, 0, c, ch3x3red, 1), _basic_conv(make, 1, ch3x3red, ch3x3, 3, padding=1)],
                  "branch2"),
        _numbered([_basic_conv(make, 0, c, ch5x5red, 1), _basic_conv(make, 1, ch5x5red, ch5x5, 3, padding=1)],
                  "branch3"),
        _numbered([nn.MaxPool2d(3, 1, 1, ceil_mode=True), _basic_conv(make, 1, c, pool_proj, 1)], "branch4")]
    return _name(nn.Concat(branches), name)


GOOGLENET_MODULES = [  # name, in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj (torchvision's numbers)
    ("inception3a", 192, 64, 96, 128, 16, 32, 32), ("inception3b", 256, 128, 128, 192, 32, 96, 64), "maxpool3",
    ("inception4a", 480, 192, 96, 208, 16, 48, 64), ("inception4b", 512, 160, 112, 224, 24, 64, 64),
    ("inception4c", 512, 128, 128, 256, 24, 64, 64), ("inception4d", 512, 112, 144, 288, 32, 64, 64),
    ("inception4e", 528, 256, 160, 320, 32, 128, 128), "maxpool4",
    ("inception5a", 832, 256, 160, 320, 32, 128, 128), ("inception5b", 832, 384, 192, 384, 48, 128, 128)]


def googlenet(make, in_channels, classes):
    """torchvision's GoogLeNet (Szegedy et al. 2014) without auxiliary heads."""
    layers = [_basic_conv(make, "conv1", in_channels, 64, 7, 2, 3), _name(nn.MaxPool2d(3, 2, ceil_mode=True), "maxpool1"),
              _basic_conv(make, "conv2", 64, 64, 1), _basic_conv(make, "conv3", 64, 192, 3, padding=1),
              _name(nn.MaxPool2d(3, 2, ceil_mode=True), "maxpool2")]
    for item in GOOGLENET_MODULES:
        if isinstance(item, str):
            layers.append(_name(nn.MaxPool2d(3 if item == "maxpool3" else 2, 2, ceil_mode=True), item))
        else:
            layers.append(_inception(make, *item))
    return layers + [_name(nn.GlobalAvgPool2d(), "avgpool"), _name(nn.Flatten(), "flatten"),
                     make.dropout("dropout", 0.2), make.linear("fc", 1024, classes)]


def _basic_block(make, name, c, planes, stride):
    """ResNet's basic block: two 3x3 convolutions with batch norm, ReLU after the sum."""
    body = [make.conv("conv1", c, planes, 3, stride, 1, bias=False), make.bn("bn1", planes), _name(nn.ReLU(), "relu"),
            make.conv("conv2", planes, planes, 3, 1, 1, bias=False), make.bn("bn2", planes)]
    return _name(nn.Residual(body, _downsample(make, c, planes, stride), activation=nn.ReLU(),
                             shortcut_name="downsample"), name), planes


def _bottleneck(make, name, c, planes, stride):
    """ResNet's bottleneck block (torchvision's v1.5: the stride on the 3x3 convolution): 1x1 reduce, 3x3,
    1x1 expand to 4 x planes, batch norm after each, ReLU after the sum."""
    out = planes * 4
    body = [make.conv("conv1", c, planes, 1, bias=False), make.bn("bn1", planes), _name(nn.ReLU(), "relu1"),
            make.conv("conv2", planes, planes, 3, stride, 1, bias=False), make.bn("bn2", planes),
            _name(nn.ReLU(), "relu2"), make.conv("conv3", planes, out, 1, bias=False), make.bn("bn3", out)]
    return _name(nn.Residual(body, _downsample(make, c, out, stride), activation=nn.ReLU(),
                             shortcut_name="downsample"), name), out


def _downsample(make, c, out, stride):
    """The projection shortcut (1x1 convolution with the block's stride, batch norm) where the block changes
    the shape; None (the identity) where it does not."""
    if stride == 1 and c == out:
        return None
    return _numbered([make.conv("", c, out, 1, stride, bias=False), make.bn("", out)], "downsample")


def _stages(make, channels, block, widths, counts, first_stride):
    stages = []
    for index, (width, count) in enumerate(zip(widths, counts)):
        blocks = []
        for position in range(count):
            stride = (first_stride if index == 0 else 2) if position == 0 else 1
            layer, channels = block(make, position, channels, width, stride)
            blocks.append(layer)
        stages.append(nn.Sequential(blocks, name=f"layer{index + 1}"))
    return stages, channels


def resnet(make, in_channels, classes, block, counts):
    """torchvision's ResNet (He et al. 2015): 7x7 stride-2 convolution, 3x3 max pooling, four stages of
    residual blocks (64, 128, 256, 512 wide; each later stage halves the size), global average pooling, fc."""
    stem = [make.conv("conv1", in_channels, 64, 7, 2, 3, bias=False), make.bn("bn1", 64), _name(nn.ReLU(), "relu"),
            _name(nn.MaxPool2d(3, 2, 1), "maxpool")]
    stages, channels = _stages(make, 64, block, (64, 128, 256, 512), counts, 1)
    return stem + stages + [_name(nn.GlobalAvgPool2d(), "avgpool"), _name(nn.Flatten(), "flatten"),
                            make.linear("fc", channels, classes)]


def cifar_resnet(make, in_channels, classes, blocks_per_stage):
    """He et al. 2016 section 4.2: 6n+2 layers on 32x32 images (see the module docstring)."""
    stem = [make.conv("conv1", in_channels, 16, 3, 1, 1, bias=False), make.bn("bn1", 16), _name(nn.ReLU(), "relu")]
    stages, channels = _stages(make, 16, _basic_block, (16, 32, 64), (blocks_per_stage,) * 3, 1)
    return stem + stages + [_name(nn.GlobalAvgPool2d(), "avgpool"), _name(nn.Flatten(), "flatten"),
                            make.linear("fc", channels, classes)]


ARCHITECTURES = {
    "alexnet": (alexnet, {}, DEFAULT_CLASSES),
    "vgg11": (vgg, {"config": "vgg11", "batch_norm": False}, DEFAULT_CLASSES),
    "vgg16": (vgg, {"config": "vgg16", "batch_norm": False}, DEFAULT_CLASSES),
    "vgg11_bn": (vgg, {"config": "vgg11", "batch_norm": True}, DEFAULT_CLASSES),
    "vgg16_bn": (vgg, {"config": "vgg16", "batch_norm": True}, DEFAULT_CLASSES),
    "googlenet": (googlenet, {}, DEFAULT_CLASSES),
    "resnet18": (resnet, {"block": _basic_block, "counts": (2, 2, 2, 2)}, DEFAULT_CLASSES),
    "resnet34": (resnet, {"block": _basic_block, "counts": (3, 4, 6, 3)}, DEFAULT_CLASSES),
    "resnet50": (resnet, {"block": _bottleneck, "counts": (3, 4, 6, 3)}, DEFAULT_CLASSES),
    "resnet20": (cifar_resnet, {"blocks_per_stage": 3}, CIFAR_DEFAULT_CLASSES),
    "resnet56": (cifar_resnet, {"blocks_per_stage": 9}, CIFAR_DEFAULT_CLASSES),
}
OPTIONS = ("classes",)


def parse_name(spec):
    """('resnet20', {'classes': 100}) for 'resnet20:classes=100'; (None, {}) when `spec` names no architecture."""
    if not isinstance(spec, str):
        return None, {}
    name, colon, rest = spec.strip().lower().partition(":")
    if name not in ARCHITECTURES:
        return None, {}
    options = {}
    for item in filter(None, rest.split(",")):
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals or key not in OPTIONS:
            raise ValueError(f"{name} options are {', '.join(f'{option}=N' for option in OPTIONS)}; got {item!r}")
        try:
            options[key] = int(value)
        except ValueError:
            raise ValueError(f"{name} option {key} must be an int, got {value!r}") from None
    return name, options


def build(name, input_shape, seed=0, dtype=np.float32, classes=None):
    """The architecture `name` for images of input_shape (C, H, W) with `classes` outputs (1000 for the
    ImageNet architectures and 10 for the CIFAR ones unless given). Shapes are checked by models.build."""
    builder, fixed, default_classes = ARCHITECTURES[name]
    classes = default_classes if classes is None else classes
    if isinstance(classes, bool) or not isinstance(classes, (int, np.integer)) or classes < 1:
        raise ValueError(f"{name}: classes must be an int >= 1, got {classes!r}")
    if len(input_shape) != 3:
        raise ValueError(f"{name} takes images: input_shape must be (C, H, W), got {tuple(input_shape)}")
    model = nn.Sequential(builder(_Maker(seed, dtype), input_shape[0], int(classes), **fixed))
    model.architecture = name if classes == default_classes else f"{name}:classes={classes}"
    return model
