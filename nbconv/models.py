"""Models from a compact spec string, the LeNets, and the lecture's pattern builder.

Spec language: comma-separated layer tokens; `[tokens]*N` repeats a group N times (groups nest).

    conv<D>k<K>[s<S>][p<P>|psame|pvalid][d<DIL>][g<G>][nobias]   2-D convolution, D filters of K x K
    conv1d<D>k<K>[s<S>][p<P>][d<DIL>][g<G>]                          1-D convolution
    local<D>k<K>[s<S>][p<P>]                                         locally connected (unshared weights)
    maxpool<K>[s<S>][p<P>][ceil]   avgpool<K>[s<S>][p<P>][ceil][nopad]   gap (global average pool)
    relu  tanh  sigmoid  lrelu[<slope>]  dropout[<p>]  flatten  fc<N>

Sizes may be `AxB` for (height, width). A Flatten is inserted before the first fc when needed.
Example, the lecture's INPUT -> [[CONV -> RELU]*2 -> POOL]*2 -> [FC -> RELU]*1 -> FC:

    [[conv16k3p1,relu]*2,maxpool2]*2,[fc64,relu]*1,fc10
"""
import re

import numpy as np

from . import nn

MODELS = {
    # LeCun et al. 1998, adapted to 28x28 input (pad 2 in the first layer) with ReLU and max pooling.
    "lenet5": "conv6k5p2,relu,maxpool2,conv16k5,relu,maxpool2,flatten,fc120,relu,fc84,relu,fc10",
    # LeCun et al. 1989/1993: 4 and 12 feature maps, tanh and average-pooling subsampling.
    "lenet1": "conv4k5,tanh,avgpool2,conv12k5,tanh,avgpool2,flatten,fc10",
}
ALIASES = {"lenet": "lenet5"}

_SIZE = r"\d+(?:x\d+)?"
_PATTERNS = {
    "conv1d": re.compile(rf"^conv1d(\d+)k(\d+)(?:s(\d+))?(?:p(\d+|same|valid))?(?:d(\d+))?(?:g(\d+))?$"),
    "conv": re.compile(rf"^conv(\d+)k({_SIZE})(?:s({_SIZE}))?(?:p({_SIZE}|same|valid))?(?:d({_SIZE}))?(?:g(\d+))?"
                       rf"(nobias)?$"),
    "local": re.compile(rf"^local(\d+)k({_SIZE})(?:s({_SIZE}))?(?:p({_SIZE}))?$"),
    "maxpool": re.compile(rf"^maxpool({_SIZE})(?:s({_SIZE}))?(?:p({_SIZE}))?(ceil)?$"),
    "avgpool": re.compile(rf"^avgpool({_SIZE})(?:s({_SIZE}))?(?:p({_SIZE}))?(ceil)?(nopad)?$"),
    "fc": re.compile(r"^fc(\d+)$"),
    "lrelu": re.compile(r"^lrelu(\d*\.?\d*(?:e-?\d+)?)$"),
    "dropout": re.compile(r"^dropout(\d*\.?\d*)$"),
}
_SIMPLE = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gap": nn.GlobalAvgPool2d, "flatten": nn.Flatten}
_NAME_PREFIX = {nn.Conv2d: "conv", nn.Conv1d: "conv", nn.LocallyConnected2d: "local", nn.MaxPool2d: "pool",
                nn.AvgPool2d: "pool", nn.GlobalAvgPool2d: "gap", nn.Linear: "fc", nn.ReLU: "relu", nn.Tanh: "tanh",
                nn.Sigmoid: "sigmoid", nn.LeakyReLU: "lrelu", nn.Dropout: "dropout", nn.Flatten: "flatten"}


def expand(spec):
    """The flat list of layer tokens in a spec, with `[...]*N` groups repeated."""
    tokens, position = _expand(spec.replace(" ", ""), 0, top=True)
    return tokens


def _expand(spec, position, top):
    tokens, current = [], ""
    while position < len(spec):
        char = spec[position]
        if char == "[":
            inner, position = _expand(spec, position + 1, top=False)
            match = re.match(r"\*(\d+)", spec[position:])
            if not match:
                raise ValueError(f"model spec: a ']' must be followed by '*N' (at character {position}) in {spec!r}")
            tokens += inner * int(match.group(1))
            position += match.end()
            continue
        if char == "]":
            if top:
                raise ValueError(f"model spec: unmatched ']' at character {position} in {spec!r}")
            if current:
                tokens.append(current)
            return tokens, position + 1
        if char == ",":
            if current:
                tokens.append(current)
            current = ""
        else:
            current += char
        position += 1
    if not top:
        raise ValueError(f"model spec: unclosed '[' in {spec!r}")
    if current:
        tokens.append(current)
    return tokens, position


def _size(text):
    if text is None:
        return None
    if text in ("same", "valid"):
        return text
    parts = tuple(int(part) for part in text.split("x"))
    return parts[0] if len(parts) == 1 else parts


def _layer(token, shape, rng, init, dtype):
    """One layer from its token, given the shape (without batch) of its input."""
    if token in _SIMPLE:
        return _SIMPLE[token]()
    for kind, pattern in _PATTERNS.items():
        match = pattern.match(token)
        if not match:
            continue
        g = match.groups()
        if kind == "conv":
            _need(token, shape, 3)
            return nn.Conv2d(shape[0], int(g[0]), _size(g[1]), stride=_size(g[2]) or 1, padding=_size(g[3]) or 0,
                             dilation=_size(g[4]) or 1, groups=int(g[5] or 1), bias=g[6] is None, rng=rng,
                             init=init, dtype=dtype)
        if kind == "conv1d":
            _need(token, shape, 2)
            return nn.Conv1d(shape[0], int(g[0]), int(g[1]), stride=int(g[2] or 1), padding=_size(g[3]) or 0,
                             dilation=int(g[4] or 1), groups=int(g[5] or 1), rng=rng, init=init, dtype=dtype)
        if kind == "local":
            _need(token, shape, 3)
            return nn.LocallyConnected2d(shape[0], int(g[0]), _size(g[1]), shape[1:], stride=_size(g[2]) or 1,
                                         padding=_size(g[3]) or 0, rng=rng, init=init, dtype=dtype)
        if kind == "maxpool":
            return nn.MaxPool2d(_size(g[0]), _size(g[1]), _size(g[2]) or 0, ceil_mode=g[3] is not None)
        if kind == "avgpool":
            return nn.AvgPool2d(_size(g[0]), _size(g[1]), _size(g[2]) or 0, ceil_mode=g[3] is not None,
                                count_include_pad=g[4] is None)
        if kind == "fc":
            _need(token, shape, 1)
            return nn.Linear(shape[0], int(g[0]), rng=rng, init=init, dtype=dtype)
        if kind == "lrelu":
            return nn.LeakyReLU(float(g[0]) if g[0] else 0.01)
        if kind == "dropout":
            return nn.Dropout(float(g[0]) if g[0] else 0.5, rng=rng)
    raise ValueError(f"model spec: unknown layer token {token!r}; see nbconv.models for the spec language")


def _need(token, shape, ndim):
    if len(shape) != ndim:
        layouts = {1: "(features,)", 2: "(C, W)", 3: "(C, H, W)"}
        raise ValueError(f"model spec: {token!r} needs input of layout {layouts[ndim]}, "
                         f"but the layers before it produce shape {shape}")


def build(spec, input_shape=(1, 28, 28), seed=0, init=None, dtype=np.float32):
    """A Sequential model from a named model ('lenet5', 'lenet1', 'lenet') or a spec string.

    input_shape is (C, H, W) for images or (C, W) for sequences, without the batch axis. Layers are
    named by kind and position: conv1, relu1, pool1, ..., fc3. init: 'he' (default) or 'glorot'
    (default for models whose activations are tanh or sigmoid).
    """
    spec = resolve_spec(spec)
    tokens = expand(spec)
    if not tokens:
        raise ValueError("model spec is empty")
    if init is None:
        init = "glorot" if any(token in ("tanh", "sigmoid") for token in tokens) else "he"
    rng = np.random.default_rng(seed)
    shape = tuple(input_shape)
    layers, counts = [], {}
    probe = np.zeros((1,) + shape, dtype)
    for token in tokens:
        if token.startswith("fc") and len(shape) > 1:
            layers.append(_named(nn.Flatten(), counts))
            probe = layers[-1].forward(probe)
            shape = probe.shape[1:]
        layer = _named(_layer(token, shape, rng, init, dtype), counts)
        try:
            probe = layer.forward(probe)
        except ValueError as error:
            raise ValueError(f"model spec: layer {token!r} ({layer.name}) does not fit input shape {shape}: {error}")
        shape = probe.shape[1:]
        layers.append(layer)
    return nn.Sequential(layers)


def _named(layer, counts):
    prefix = _NAME_PREFIX[type(layer)]
    counts[prefix] = counts.get(prefix, 0) + 1
    layer.name = f"{prefix}{counts[prefix]}"
    return layer


def resolve_spec(name_or_spec):
    """The spec string behind a model name, a `pattern:` shorthand, or a spec string as given."""
    text = str(name_or_spec).strip()
    key = ALIASES.get(text.lower(), text.lower())
    if key in MODELS:
        return MODELS[key]
    if key.startswith("pattern:"):
        options = {}
        for item in filter(None, key[len("pattern:"):].split(",")):
            if "=" not in item:
                raise ValueError(f"pattern options are name=value pairs (n, m, k, width, fc, classes), got {item!r}")
            name, value = item.split("=", 1)
            options[name.strip()] = int(value)
        return pattern(**options)
    return text


def pattern(n=2, m=2, k=1, width=16, fc=64, classes=10, pool="max"):
    """The lecture's INPUT -> [[CONV -> RELU]*n -> POOL]*m -> [FC -> RELU]*k -> FC as a spec string.

    3x3 'same' convolutions with `width` filters, doubled after each pool; 2x2 pooling.
    """
    for name, value, minimum in (("n", n, 1), ("m", m, 0), ("k", k, 0), ("width", width, 1), ("fc", fc, 1),
                                 ("classes", classes, 1)):
        if not isinstance(value, int) or value < minimum:
            raise ValueError(f"pattern: {name} must be an int >= {minimum}, got {value!r}")
    blocks = [f"[conv{width * 2 ** block}k3p1,relu]*{n},{pool}pool2" for block in range(m)]
    head = [f"[fc{fc},relu]*{k}"] if k else []
    return ",".join(blocks + head + [f"fc{classes}"])
