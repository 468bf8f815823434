"""Models from a compact spec string, the LeNets, the lecture's pattern builder and, by name, the lecture's
architectures (nbconv.architectures).

Spec language: comma-separated layer tokens; `[tokens]*N` repeats a group N times (groups nest);
`res[BODY]` is a residual block y = BODY(x) + x and `res[BODY|SHORTCUT]` one with y = BODY(x) + SHORTCUT(x);
`cat[A|B|...]` runs branches A, B, ... on the same input and concatenates their outputs along channels.
BODY, SHORTCUT and the branches are specs themselves, so blocks nest.

    conv<D>k<K>[s<S>][p<P>|psame|pvalid][d<DIL>][g<G>][nobias]   2-D convolution, D filters of K x K
    conv1d<D>k<K>[s<S>][p<P>][d<DIL>][g<G>]                          1-D convolution
    local<D>k<K>[s<S>][p<P>]                                         locally connected (unshared weights)
    maxpool<K>[s<S>][p<P>][ceil]   avgpool<K>[s<S>][p<P>][ceil][nopad]   gap (global average pool)
    adaptiveavgpool<H>[x<W>]  adaptivemaxpool<H>[x<W>]                   adaptive pooling to H x W (none: as input)
    bn[eps<E>][momentum<M>][noaffine]  bn1d...                          batch normalization (2-D, 1-D)
    lrn<SIZE>[a<ALPHA>][b<BETA>][k<K>]                                   local response normalization
    relu  relu6  tanh  sigmoid  lrelu[<slope>]  dropout[<p>]  flatten  fc<N>

Sizes may be `AxB` for (height, width). A Flatten is inserted before the first fc when needed.
Example, the lecture's INPUT -> [[CONV -> RELU]*2 -> POOL]*2 -> [FC -> RELU]*1 -> FC:

    [[conv16k3p1,relu]*2,maxpool2]*2,[fc64,relu]*1,fc10

A basic residual block, one that halves the size with a projection shortcut, and an inception module:

    res[conv16k3p1nobias,bn,relu,conv16k3p1nobias,bn],relu
    res[conv32k3s2p1nobias,bn,relu,conv32k3p1nobias,bn|conv32k1s2nobias,bn],relu
    cat[conv64k1|conv96k1,relu,conv128k3p1|conv16k1,relu,conv32k5p2|maxpool3s1p1,conv32k1]

What a spec may ask for is bounded: at most MAX_LAYERS layers, and parameters plus one sample's activations
within max_bytes (build's argument), checked before anything is allocated.
"""
import re

import numpy as np

from . import checks, nn
from .nn.init import INITS
from .spec_grammar import PATTERNS as _PATTERNS, parse_size as _size  # the token grammar, shared with printing

MAX_LAYERS = 10_000
MAX_BYTES = 8 << 30

MODELS = {
    # LeCun et al. 1998, adapted to 28x28 input (pad 2 in the first layer) with ReLU and max pooling.
    "lenet5": "conv6k5p2,relu,maxpool2,conv16k5,relu,maxpool2,flatten,fc120,relu,fc84,relu,fc10",
    # LeCun et al. 1989/1993: 4 and 12 feature maps, tanh and average-pooling subsampling.
    "lenet1": "conv4k5,tanh,avgpool2,conv12k5,tanh,avgpool2,flatten,fc10",
}
ALIASES = {"lenet": "lenet5"}

_SIMPLE = {"relu": nn.ReLU, "relu6": nn.ReLU6, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gap": nn.GlobalAvgPool2d, "flatten": nn.Flatten}
_NAME_PREFIX = {"Conv2d": "conv", "Conv1d": "conv", "LocallyConnected2d": "local", "MaxPool2d": "pool",
                "AvgPool2d": "pool", "GlobalAvgPool2d": "gap", "Linear": "fc", "ReLU": "relu", "ReLU6": "relu", "Tanh": "tanh",
                "Sigmoid": "sigmoid", "LeakyReLU": "lrelu", "Dropout": "dropout", "Flatten": "flatten",
                "BatchNorm2d": "bn", "BatchNorm1d": "bn", "LocalResponseNorm": "lrn", "AdaptiveAvgPool2d": "pool",
                "AdaptiveMaxPool2d": "pool", "Residual": "res", "Concat": "cat"}



# ----------------------------------------------------------------------------- parsing

def parse(spec):
    """The spec as a tree: a list whose items are layer tokens (str), ('res', body, shortcut or None) and
    ('cat', [branch, ...]), each body/shortcut/branch a list again; `[...]*N` groups are expanded. More than
    MAX_LAYERS layers in all is a ValueError, found before anything is expanded."""
    text = str(spec).replace(" ", "")
    nodes, position, _ = _parse_sequence(text, 0, closers="")
    return nodes


def _parse_sequence(text, position, closers):
    """Items up to one of `closers` (or the end when closers is empty): (nodes, position, layer count)."""
    nodes, count = [], 0
    while position < len(text):
        char = text[position]
        if char in closers:
            return nodes, position, count
        if char == ",":
            position += 1
            continue
        if char in "]|":
            what = "']'" if char == "]" else "'|' (it separates the parts of res[...] and cat[...] only)"
            raise ValueError(f"model spec: unmatched {what} at character {position} in {text!r}")
        if char == "*":
            raise ValueError(f"model spec: '*N' must follow a ']' (at character {position}) in {text!r}")
        if text.startswith(("res[", "cat["), position):
            kind = text[position:position + 3]
            parts, part_count = [], 1
            position += 4
            while True:
                part, position, inner = _parse_sequence(text, position, closers="|]")
                if position >= len(text):
                    raise ValueError(f"model spec: unclosed '{kind}[' in {text!r}")
                parts.append(part)
                part_count += inner
                position += 1
                if text[position - 1] == "]":
                    break
            if any(not part for part in parts):
                raise ValueError(f"model spec: an empty part in {kind}[...] in {text!r}")
            if kind == "res" and len(parts) > 2:
                raise ValueError(f"model spec: res[BODY|SHORTCUT] has at most one '|', got {len(parts) - 1} "
                                 f"in {text!r}")
            nodes.append(("res", parts[0], parts[1] if len(parts) > 1 else None) if kind == "res" else ("cat", parts))
            count += part_count
        elif char == "[":
            inner_nodes, position, inner = _parse_sequence(text, position + 1, closers="]")
            if position >= len(text):
                raise ValueError(f"model spec: unclosed '[' in {text!r}")
            match = re.match(r"\]\*(\d+)", text[position:])
            if not match:
                raise ValueError(f"model spec: a ']' must be followed by '*N' (at character {position + 1}) "
                                 f"in {text!r}")
            repeats = int(match.group(1))
            if inner * repeats > MAX_LAYERS:
                raise ValueError(f"model spec: [...]*{repeats} asks for {inner * repeats:,} layers; at most "
                                 f"{MAX_LAYERS:,} are allowed")
            nodes += inner_nodes * repeats
            count += inner * repeats
            position += match.end()
        else:
            match = re.compile(r"[^,\[\]|*]+").match(text, position)
            token = match.group(0)
            position = match.end()
            if position < len(text) and text[position] == "[":
                raise ValueError(f"model spec: {token!r} cannot open a '[' (only res[...] and cat[...] can) "
                                 f"at character {position} in {text!r}")
            nodes.append(token)
            count += 1
        if count > MAX_LAYERS:
            raise ValueError(f"model spec: more than {MAX_LAYERS:,} layers")
    if closers:
        raise ValueError(f"model spec: unclosed '[' in {text!r}")
    return nodes, position, count


def expand(spec):
    """The flat list of layer tokens in a spec, with `[...]*N` groups repeated and the layers inside res[...]
    and cat[...] blocks listed in order."""
    def flatten(nodes):
        for node in nodes:
            if isinstance(node, str):
                yield node
            elif node[0] == "res":
                yield from flatten(node[1])
                yield from flatten(node[2] or [])
            else:
                for branch in node[1]:
                    yield from flatten(branch)
    return list(flatten(parse(spec)))


# ----------------------------------------------------------------------------- building

def _at_least(token, what, value, minimum=1):
    """A size from a token, which must be >= minimum ('s0', 'd0', 'g0', 'k0' are errors, not defaults)."""
    if value is None or isinstance(value, str):
        return value
    for part in (value if isinstance(value, tuple) else (value,)):
        if part < minimum:
            raise ValueError(f"model spec: {token!r}: the {what} must be >= {minimum}, got {part}")
    return value


def _number(token, text, default):
    if text in (None, ""):
        return default
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"model spec: {token!r}: {text!r} is not a number") from None


def _layer(token, shape, rng, init, dtype, budget):
    """One layer from its token, given the shape (without batch) of its input. Layers with weights have
    their parameter count checked against the budget before anything is allocated."""
    if token in _SIMPLE:
        return _SIMPLE[token]()
    for kind, regex in _PATTERNS.items():
        match = regex.match(token)
        if not match:
            continue
        g = match.groups()
        if kind == "conv":
            _need(token, shape, 3)
            out, size = _at_least(token, "filter count", int(g[0])), _at_least(token, "kernel size", _size(g[1]))
            stride, dilation = _at_least(token, "stride", _size(g[2])), _at_least(token, "dilation", _size(g[4]))
            groups = _at_least(token, "group count", int(g[5]) if g[5] is not None else 1)
            if shape[0] % groups or out % groups:
                raise ValueError(f"model spec: {token!r}: g{groups} must divide the input channels ({shape[0]}) "
                                 f"and the filters ({out})")
            kh, kw = size if isinstance(size, tuple) else (size, size)
            budget.parameters(token, out * (shape[0] // groups * kh * kw + 1))
            return nn.Conv2d(shape[0], out, size, stride=stride or 1, padding=_size(g[3]) or 0,
                             dilation=dilation or 1, groups=groups, bias=g[6] is None, rng=rng, init=init, dtype=dtype)
        if kind == "conv1d":
            _need(token, shape, 2)
            out, size = _at_least(token, "filter count", int(g[0])), _at_least(token, "kernel size", int(g[1]))
            stride = _at_least(token, "stride", int(g[2]) if g[2] else None)
            dilation = _at_least(token, "dilation", int(g[4]) if g[4] else None)
            groups = _at_least(token, "group count", int(g[5]) if g[5] is not None else 1)
            if shape[0] % groups or out % groups:
                raise ValueError(f"model spec: {token!r}: g{groups} must divide the input channels ({shape[0]}) "
                                 f"and the filters ({out})")
            budget.parameters(token, out * (shape[0] // groups * size + 1))
            return nn.Conv1d(shape[0], out, size, stride=stride or 1, padding=_size(g[3]) or 0,
                             dilation=dilation or 1, groups=groups, rng=rng, init=init, dtype=dtype)
        if kind == "local":
            _need(token, shape, 3)
            out, size = _at_least(token, "filter count", int(g[0])), _at_least(token, "kernel size", _size(g[1]))
            stride = _at_least(token, "stride", _size(g[2])) or 1
            from . import functional as F
            OH, OW = F.local_conv2d_output_size((1,) + shape, size, stride, _size(g[3]) or 0)
            kh, kw = size if isinstance(size, tuple) else (size, size)
            budget.parameters(token, OH * OW * out * (shape[0] * kh * kw + 1))
            return nn.LocallyConnected2d(shape[0], out, size, shape[1:], stride=stride, padding=_size(g[3]) or 0,
                                         rng=rng, init=init, dtype=dtype)
        if kind in ("maxpool", "avgpool"):
            size, stride = _at_least(token, "window", _size(g[0])), _at_least(token, "stride", _size(g[1]))
            if kind == "maxpool":
                return nn.MaxPool2d(size, stride, _size(g[2]) or 0, ceil_mode=g[3] is not None)
            return nn.AvgPool2d(size, stride, _size(g[2]) or 0, ceil_mode=g[3] is not None,
                                count_include_pad=g[4] is None)
        if kind == "fc":
            _need(token, shape, 1)
            out = _at_least(token, "output count", int(g[0]))
            budget.parameters(token, out * (shape[0] + 1))
            return nn.Linear(shape[0], out, rng=rng, init=init, dtype=dtype)
        if kind == "bn":
            _need(token, shape, (1, 2) if g[0] else 3)
            momentum = None if g[2] == "none" else _number(token, g[2], 0.1)
            layer = nn.BatchNorm1d if g[0] else nn.BatchNorm2d
            return layer(shape[0], eps=_number(token, g[1], 1e-5), momentum=momentum, affine=g[3] is None, dtype=dtype)
        if kind == "adaptivepool":  # each size a number or 'none' (that axis keeps the input's size)
            size = tuple(None if part == "none" else _at_least(token, "output size", int(part))
                         for part in g[1].split("x"))
            size = size * 2 if len(size) == 1 else size
            return getattr(nn, f"Adaptive{g[0].capitalize()}Pool2d")(size)
        if kind == "lrn":
            size = _at_least(token, "window", int(g[0]))
            return nn.LocalResponseNorm(size, alpha=_number(token, g[1], 1e-4), beta=_number(token, g[2], 0.75),
                                        k=_number(token, g[3], 1.0))
        if kind == "lrelu":
            return nn.LeakyReLU(_number(token, g[0], 0.01))
        if kind == "dropout":
            return nn.Dropout(_number(token, g[0], 0.5), rng=rng)
    raise ValueError(f"model spec: unknown layer token {token!r}; see nbconv.models for the spec language")


def _need(token, shape, ndim):
    ndims = ndim if isinstance(ndim, tuple) else (ndim,)
    if len(shape) not in ndims:
        layouts = {1: "(features,)", 2: "(C, W)", 3: "(C, H, W)"}
        raise ValueError(f"model spec: {token!r} needs input of layout {' or '.join(layouts[n] for n in ndims)}, "
                         f"but the layers before it produce shape {shape}")


class _Budget:
    """Bytes a model may take: parameters (counted before each is allocated) plus one sample's activations."""

    def __init__(self, max_bytes, itemsize):
        self.max_bytes, self.itemsize, self.parameter_count = max_bytes, itemsize, 0

    def parameters(self, token, count):
        self.parameter_count += count
        self.check(f"its weights bring the model to {self.parameter_count:,} parameters")

    def check(self, what, activation_count=0):
        total = (self.parameter_count + activation_count) * self.itemsize
        if total > self.max_bytes:
            raise ValueError(f"model spec: {what}: {total / 2 ** 30:,.1f} GiB with one sample's activations; "
                             f"at most {self.max_bytes / 2 ** 30:g} GiB is allowed (build's max_bytes)")


def _check_input_shape(input_shape):
    if isinstance(input_shape, (str, bytes)) or not hasattr(input_shape, "__len__"):
        raise TypeError(f"input_shape must be a tuple (C, H, W), (C, W) or (features,), got {input_shape!r}")
    shape = tuple(input_shape)
    if not 1 <= len(shape) <= 3 or any(isinstance(size, bool) or not isinstance(size, (int, np.integer))
                                       or size < 1 for size in shape):
        raise ValueError(f"input_shape must be 1 to 3 positive ints (C, H, W), (C, W) or (features,), "
                         f"got {input_shape!r}")
    return tuple(int(size) for size in shape)


def _check_build_options(seed, init, dtype, max_bytes):
    """build's options checked, each error naming its argument; the dtype as a numpy dtype."""
    checks.integer("seed", seed, 0, 2 ** 128)
    if init is not None and init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)} or None, got {init!r}")
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64 (the kernels' types), got {dtype}")
    checks.finite("max_bytes", max_bytes, above=True)
    return dtype


def build(spec, input_shape=(1, 28, 28), seed=0, init=None, dtype=np.float32, num_classes=None,
          max_bytes=MAX_BYTES):
    """A Sequential model from a named model ('lenet5', 'lenet1', 'lenet', an architecture of
    nbconv.architectures such as 'resnet20' or 'resnet20:classes=100') or a spec string.

    input_shape is (C, H, W) for images or (C, W) for sequences, without the batch axis. Layers are
    named by kind and position: conv1, relu1, pool1, ..., fc3 (res1, cat1 for blocks; inside them, the
    counts start again). init: 'he' (default) or 'glorot' (default for models whose activations are tanh or
    sigmoid). num_classes: the outputs of a named architecture (its default otherwise). The whole model is
    checked against input_shape before it is returned: a layer that does not fit is a ValueError naming it
    and both shapes, and so is a model whose parameters and one sample's activations exceed max_bytes.
    """
    from . import architectures
    input_shape = _check_input_shape(input_shape)
    dtype = _check_build_options(seed, init, dtype, max_bytes)
    budget = _Budget(max_bytes, dtype.itemsize)
    name, options = architectures.parse_name(spec)
    if name is not None:
        if num_classes is not None:
            options.setdefault("classes", num_classes)
        model = architectures.build(name, input_shape, seed=seed, dtype=dtype, **options)
        budget.parameter_count = sum(parameter.value.size for parameter in model.parameters())
    else:
        spec = resolve_spec(spec)
        tree = parse(spec)
        tokens = expand(spec)
        if not tokens:
            raise ValueError("model spec is empty")
        if init is None:
            init = "glorot" if any(token in ("tanh", "sigmoid") for token in tokens) else "he"
        model = nn.Sequential(_build_sequence(tree, input_shape, np.random.default_rng(seed), init, dtype, budget, ""))
    activations = [0]
    try:
        model.trace(input_shape, lambda path, layer, before, after: activations.__setitem__(
            0, activations[0] + int(np.prod(after, dtype=np.float64))))
    except nn.ShapeMismatch as error:
        raise ValueError(f"{name} does not admit input of shape {input_shape}: {error}") from None
    budget.check(f"the model has {budget.parameter_count:,} parameters and {activations[0]:,} activation values "
                 f"per sample", activations[0])
    return model


def _build_sequence(nodes, shape, rng, init, dtype, budget, path):
    """Layers for a list of nodes over an input of `shape`, each checked against its input as it is added."""
    layers, counts = [], {}
    for node in nodes:
        if isinstance(node, str) and node.startswith("fc") and len(shape) > 1:
            layers.append(_named(nn.Flatten(), counts))
            shape = layers[-1].output_shape(shape)
        if isinstance(node, str):
            try:
                layer = _layer(node, shape, rng, init, dtype, budget)
            except ValueError as error:
                where = f"{path}." if path else ""
                message = str(error).removeprefix("model spec: ")
                raise ValueError(f"model spec: layer {where}{_next_name(node, counts)} ({node}) "
                                 f"does not fit input shape {shape}: {message}") from None
        elif node[0] == "res":
            block_path = f"{path}.res{counts.get('res', 0) + 1}" if path else f"res{counts.get('res', 0) + 1}"
            body = _build_sequence(node[1], shape, rng, init, dtype, budget, block_path)
            shortcut = None if node[2] is None else nn.Sequential(
                _build_sequence(node[2], shape, rng, init, dtype, budget, f"{block_path}.shortcut"))
            layer = nn.Residual(body, shortcut)
        else:
            block_path = f"{path}.cat{counts.get('cat', 0) + 1}" if path else f"cat{counts.get('cat', 0) + 1}"
            layer = nn.Concat([nn.Sequential(_build_sequence(branch, shape, rng, init, dtype, budget,
                                                             f"{block_path}.branch{index + 1}"))
                               for index, branch in enumerate(node[1])])
        _named(layer, counts)
        try:
            shape = layer.output_shape(shape)
        except ValueError as error:
            detail = error.detail if isinstance(error, nn.ShapeMismatch) else str(error)
            where = f"{path}." if path else ""
            raise ValueError(f"model spec: layer {where}{layer.name} ({layer.spec()}) does not fit input shape "
                             f"{shape}: {detail}") from None
        layers.append(layer)
    return layers


def _next_name(token, counts):
    for kind, prefix in (("conv", "conv"), ("local", "local"), ("maxpool", "pool"), ("avgpool", "pool"),
                         ("adaptive", "pool"), ("fc", "fc"), ("bn", "bn"), ("lrn", "lrn"), ("lrelu", "lrelu"),
                         ("dropout", "dropout"), ("relu", "relu"), ("tanh", "tanh"), ("sigmoid", "sigmoid"),
                         ("gap", "gap"), ("flatten", "flatten")):
        if token.startswith(kind):
            return f"{prefix}{counts.get(prefix, 0) + 1}"
    return token


def _named(layer, counts):
    prefix = _NAME_PREFIX[type(layer).__name__]
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
        known = ("n", "m", "k", "width", "fc", "classes")
        for item in filter(None, key[len("pattern:"):].split(",")):
            name, _, value = item.partition("=")
            name = name.strip()
            if not _ or name not in known:
                raise ValueError(f"pattern options are name=value pairs with names {', '.join(known)}; got {item!r}")
            try:
                options[name] = int(value)
            except ValueError:
                raise ValueError(f"pattern option {name} must be an int, got {value!r}") from None
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


def load_weights(model, path, strict=True):
    """Load a state dict stored as .npz ({name: array}, e.g. torchvision weights saved with
    `np.savez(path, **{k: v.numpy() for k, v in torch_model.state_dict().items()})`) into `model`.

    Never unpickles: object arrays are refused. Only the arrays the model has are read, each after its declared
    size is checked against the model's shape (a decompression bomb fails before it is inflated). Every key is
    checked (see Layer.load_state_dict), and an array holding NaN or infinity (also after its conversion to the
    model's dtype) is refused, loading nothing; returns (missing_keys, unexpected_keys), which strict=False
    skipped.
    """
    import io
    import zipfile

    from .zip_methods import unread_method
    shapes = {key: parameter.shape for key, parameter in model.named_parameters().items()}
    shapes.update({key: tuple(buffer.shape) for key, buffer in model.named_buffers().items()})
    dtypes = {key: np.dtype(parameter.value.dtype) for key, parameter in model.named_parameters().items()}
    dtypes.update({key: np.dtype(buffer.dtype) for key, buffer in model.named_buffers().items()})
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"weights file {path} does not exist") from None
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is not a .npz file of named arrays: {error}") from None
    with archive:
        unread = unread_method(archive)  # bzip2 and LZMA inflate without a bound (zip_methods)
        if unread is not None:
            raise ValueError(f"{path} is not a .npz file of named arrays: {unread}")
        entries = {name[:-len(".npy")] if name.endswith(".npy") else name: name for name in archive.namelist()}
        state = {}
        try:
            for key in [key for key in entries if key in shapes]:
                info = archive.getinfo(entries[key])
                limit = int(np.prod(shapes[key], dtype=np.int64)) * 16 + 4096  # any numeric dtype, and the header
                if info.file_size > limit:
                    raise ValueError(f"array {key!r} declares {info.file_size:,} bytes, more than the {limit:,} an "
                                     f"array of shape {shapes[key]} can need")
                try:
                    state[key] = np.lib.format.read_array(io.BytesIO(archive.read(info)), allow_pickle=False)
                except ValueError as error:
                    if "pickle" not in str(error).lower():
                        raise
                    raise ValueError(f"array {key!r} holds Python objects, which nbconv does not load") from None
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, NotImplementedError) as error:
            raise ValueError(f"{path} is not a .npz file of named arrays: {error}") from None
    for key, value in state.items():  # as ONNX import and checkpoints: a damaged file, whose scores would be NaN
        if dtypes[key].kind == "f" and value.dtype.kind in "fiu":
            with np.errstate(over="ignore", invalid="ignore"):
                finite = np.isfinite(value.astype(dtypes[key])).all()
            if not finite:
                raise ValueError(f"{path}: array {key!r} holds NaN or infinity, or values past {dtypes[key]}'s range")
    if strict and set(entries) != set(shapes):
        model.load_state_dict({**dict.fromkeys(entries), **state}, strict=True)  # its error, naming the keys
    result = model.load_state_dict(state, strict=False)
    return type(result)(result.missing_keys, sorted(set(entries) - set(shapes), key=list(entries).index))
