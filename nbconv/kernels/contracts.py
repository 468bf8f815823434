"""What each public kernel may be called with, on either backend, and the checked functions nbconv.kernels.cpu
and nbconv.kernels.cuda export.

The compiled loops index their arrays without bounds checks (Numba's @njit loops, and @cuda.jit kernels on a
GPU), so a call whose shapes do not fit reads or writes outside them. CONTRACTS holds one entry per kernel name,
for the CPU kernel and the CUDA launcher of that name alike: the shape of each array argument, in dimension
names shared between the arguments (and literal sizes), which arrays the kernel writes, which hold int64
positions, labels or segment ends, and what the scalar hyper-parameters may be. Where a rule needs arithmetic
(a pooled size, a concatenation's offset) the entry names a small function. `checked` wraps a kernel into a
Python function of the same name and parameters that checks its call against the entry before running it: a
ValueError naming the argument, what was expected and what was given, raised before anything is written or
launched.

Shapes are written as strings: "N C S" is a 3-D array, "N C 1 1" a 4-D one whose last axes have one element,
and "C | 0" a (C,) array or the empty (0,) placeholder a kernel reads as "absent" (no bias, no running
statistics). Each dimension takes the size most arguments give it (the first one's on a tie), so a message
names the argument that disagrees. The float arrays share one dtype, float32 or float64; written arrays must
be of the exact shape and dtype, and writeable when they are numpy arrays. Strided arrays are accepted: the
loops and the CUDA kernels index them through their strides.

On the CPU the arrays are numpy arrays. A CUDA launcher takes Numba device arrays (real ones, or the
simulator's) and numpy arrays, which Numba copies to the device and back around the launch. The rules that
read array contents (softmax labels in range, the flat optimizers' segment ends) read them only from numpy
arrays: reading a device array would copy it to the host on every call, so for device arrays only their shape
and dtype are checked. Values out of range there make the kernels read wrongly (a label outside [0, K) reads
outside its row of logits), never write outside their outputs.

The CPU's convolutions, fully connected products, max pooling's forward pass and adaptive max pooling's
backward pass check their own arguments, more strictly (cpu/arguments.py: written arrays C-contiguous too):
SELF_CHECKED lists them, and their entries here apply to the CUDA launchers only.
"""
import collections
import functools
import inspect
import numbers

import numpy as np

from ..checks import FLOAT_DTYPES, windows

# CPU kernels whose entry points check their own arguments: only the CUDA launchers of these names are wrapped
SELF_CHECKED = frozenset({
    "conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight", "conv2d_backward_bias",
    "conv2d_backward_weight_bias", "linear_forward", "linear_relu_forward", "linear_backward_input",
    "linear_backward_weight", "linear_backward_bias", "linear_backward_weight_bias", "linear_relu_backward_input",
    "linear_relu_backward_weight_bias", "max_pool2d_forward", "adaptive_max_pool2d_backward",
})


# ----------------------------------------------------------------------------- scalar hyper-parameters

def _is_integer(value):
    return type(value) is int or (isinstance(value, numbers.Integral) and not isinstance(value, bool))


def integer(least):
    def check(name, value):
        if not _is_integer(value) or value < least:
            return f"{name} must be an integer of at least {least}, got {value!r}"
    return check


def real(name, value):
    if type(value) is not float and (not isinstance(value, numbers.Real) or isinstance(value, bool)):
        return f"{name} must be a real number, got {value!r}"


def real_in(low, high, high_included=True, low_included=True):
    """A real number in the interval from low to high (each end included or not)."""
    interval = f"{'[' if low_included else '('}{low}, {high}{']' if high_included else ')'}"

    def check(name, value):
        if (real(name, value) or not (low <= value if low_included else low < value)
                or not (value <= high if high_included else value < high)):
            return f"{name} must be a real number in {interval}, got {value!r}"
    return check


def one_of(*allowed):
    def check(name, value):
        if isinstance(value, float) or value not in allowed:
            return f"{name} must be one of {', '.join(map(str, allowed))}, got {value!r}"
    return check


FLAG = one_of(0, 1)  # also True and False
POSITIVE = real_in(0.0, float("inf"), low_included=False)


# ----------------------------------------------------------------------------- rules that need arithmetic

def _fail(message):
    raise ValueError(message)


def pooled_sizes(size, kernel, stride, padding):
    """The output sizes windows of `kernel` at `stride` over `size` padded by `padding` give: floor mode's
    and ceil mode's, as pool_geometry; none when not even one window fits."""
    return tuple(sorted({windows(size, kernel, stride, padding, ceil_mode=ceil_mode) for ceil_mode in (False, True)}
                        - {0}))


def _pool_rule(pooled, plane):
    """The pooling windows' rule: windows from 1, strides from 1, padding at most half of the window, and the
    output `pooled`'s planes of a size the windows over `plane`'s planes give (floor or ceil mode)."""
    axes = [(f"kernel_{axis}", f"stride_{axis}", f"padding_{axis}", size, out)
            for axis, size, out in (("h", "H", "OH"), ("w", "W", "OW"))]

    def rule(dims, args):
        for kernel_name, stride_name, padding_name, size_name, out_name in axes:
            kernel, stride, padding = args[kernel_name], args[stride_name], args[padding_name]
            for name, value, least in ((kernel_name, kernel, 1), (stride_name, stride, 1), (padding_name, padding, 0)):
                if not _is_integer(value) or value < least:
                    _fail(f"{name} must be an integer of at least {least}, got {value!r}")
            if 2 * padding > kernel:
                _fail(f"{padding_name} must be at most half of {kernel_name} ({kernel}), got {padding}")
            sizes = pooled_sizes(dims[size_name], kernel, stride, padding)
            if dims[out_name] not in sizes:
                wanted = " or ".join(map(str, sizes)) if sizes else "none (the window is larger than the plane)"
                _fail(f"{pooled} must have {out_name} = {wanted} for {plane}'s {size_name} = {dims[size_name]}, "
                      f"{kernel_name}={kernel}, {stride_name}={stride}, {padding_name}={padding}; got "
                      f"{dims[out_name]}")
    return rule


def _plane_rule(name):
    """The input planes hold at least one pixel (a mean over an empty plane divides by zero)."""
    def rule(dims, args):
        if dims["H"] == 0 or dims["W"] == 0:
            _fail(f"{name} must have non-empty planes (H, W >= 1), got shape {args[name].shape}")
    return rule


def _cat_rule(part):
    def rule(dims, args):
        if dims["E"] and args["offset"] + dims["E"] > dims["T"]:
            _fail(f"offset + {part}'s extent must be at most the joined extent {dims['T']}, got offset "
                  f"{args['offset']} + {dims['E']}")
    return rule


def _local_rule(bank):
    """The weight bank's (OH, OW) are the output size of its (KH, KW) windows over the input's (H, W) at the
    strides and paddings given (local_conv2d_output_size)."""
    def rule(dims, args):
        if dims["KH"] < 1 or dims["KW"] < 1:
            _fail(f"{bank} must have windows of at least 1x1, got shape {args[bank].shape}")
        for axis, size, window, out in (("h", "H", "KH", "OH"), ("w", "W", "KW", "OW")):
            stride, padding = args[f"stride_{axis}"], args[f"padding_{axis}"]
            count = windows(dims[size], dims[window], stride, padding)
            if count == 0 or dims[out] != count:
                wanted = count or "none (a window larger than the padded input)"
                _fail(f"{bank} must have {out} = {wanted} for {size} = {dims[size]}, {window} = {dims[window]}, "
                      f"stride_{axis}={stride}, padding_{axis}={padding}; got {dims[out]}")
    return rule


def _conv_rule(image, filters, result):
    """The filters (D, G, KH, KW), G = C / groups, fit `image`'s C channels in `groups` groups (no empty axis, D a
    multiple of groups), and `result`'s (OH, OW) are the size the dilated windows over `image`'s padded (H, W) at
    the strides given make: at least 1x1 (Convolution.output_shape in cpu/conv/plan.py)."""
    def rule(dims, args):
        groups = args["groups"]
        if min(dims["D"], dims["G"], dims["KH"], dims["KW"]) < 1 or dims["C"] != dims["G"] * groups \
                or dims["D"] % groups:
            _fail(f"{filters} must be (D, C/groups, KH, KW) with no empty axis for {image}'s C = {dims['C']} and "
                  f"groups={groups} (D a multiple of groups), got shape {args[filters].shape}")
        for axis, size, window, out in (("h", "H", "KH", "OH"), ("w", "W", "KW", "OW")):
            stride, padding, dilation = args[f"stride_{axis}"], args[f"padding_{axis}"], args[f"dilation_{axis}"]
            count = windows(dims[size], dims[window], stride, padding, dilation)
            if count == 0:
                _fail(f"{filters}'s {window} = {dims[window]} at dilation_{axis}={dilation} must fit {image}'s "
                      f"{size} = {dims[size]} padded by padding_{axis}={padding}")
            if dims[out] != count:
                _fail(f"{result} must have {out} = {count} for {image}'s {size} = {dims[size]}, "
                      f"{window} = {dims[window]}, stride_{axis}={stride}, padding_{axis}={padding}, "
                      f"dilation_{axis}={dilation}; got {dims[out]}")
    return rule


def _batch_norm_rule(dims, args):
    running = [name for name in ("running_mean", "running_var") if name in args and args[name].shape[0] > 0]
    if len(running) == 1:
        _fail("running_mean and running_var must both be (C,) arrays or both empty (0,), got "
              f"{args['running_mean'].shape} and {args['running_var'].shape}")
    if "running_mean" in args and not args["training"] and not running:
        _fail(f"running_mean and running_var must be (C,) = ({dims['C']},) arrays when training=0 (the statistics "
              "used), got empty ones")
    if args["training"] and dims["N"] * dims["S"] < 2 and dims["C"]:
        _fail(f"input must hold at least two values per channel when training=1, got (N, C, S) = "
              f"({dims['N']}, {dims['C']}, {dims['S']})")


def _labels_rule(dims, args):
    """At least one class; and labels in [0, K) when they are a numpy array (a device array's are not read)."""
    labels, N, K = args["labels"], dims["N"], dims["K"]
    if N and K == 0:
        _fail(f"logits must have at least one class, got shape {args['logits'].shape}")
    if N and isinstance(labels, np.ndarray) and (labels.min() < 0 or labels.max() >= K):
        _fail(f"labels must lie in [0, {K}) for logits with {K} classes, got values from {labels.min()} to "
              f"{labels.max()}")


def _segments_rule(dims, args):
    """At least one segment for a non-empty buffer; and, when segment_ends is a numpy array (a device array's
    values are not read), non-decreasing ends from 0 that end at the buffer's length."""
    ends, L = args["segment_ends"], dims["L"]
    if L and dims["S"] == 0:
        _fail(f"segment_ends must hold at least one segment end for param's length {L}, got none")
    if L and isinstance(ends, np.ndarray) and (ends[-1] != L or ends[0] < 0 or (np.diff(ends) < 0).any()):
        _fail(f"segment_ends must be non-decreasing segment ends from 0 whose last is param's length {L}, got "
              f"{ends if ends.size <= 8 else f'{ends[:4]} ... {ends[-4:]}'}")


def _apart(*pairs):
    """Pairs (written, read) of arrays that must not share memory (the kernel keeps partial results in the
    written one while it still reads the other)."""
    def rule(dims, args):
        for written, read in pairs:
            if _may_share_memory(args[written], args[read]):
                _fail(f"{written} must not share memory with {read}")
    return rule


def _may_share_memory(first, second):
    """Whether the memory two arrays span overlaps: numpy's bounds test for numpy arrays, else a test of the byte
    ranges from each one's start address."""
    if isinstance(first, np.ndarray) and isinstance(second, np.ndarray):
        return np.may_share_memory(first, second)
    (first_low, first_high), (second_low, second_high) = _byte_range(first), _byte_range(second)
    return first_low < second_high and second_low < first_high


def _byte_range(array):
    """The addresses [low, high) of the bytes `array`'s elements span (low == high when it has none)."""
    interface = getattr(array, "__cuda_array_interface__", None)
    if interface is None:  # a numpy array, or the simulator's device array, whose memory is a numpy array's
        interface = np.asarray(array).__array_interface__
    low = high = interface["data"][0]
    if array.size == 0:
        return low, high
    for size, stride in zip(array.shape, array.strides):
        reach = (size - 1) * stride
        if reach < 0:
            low += reach
        else:
            high += reach
    return low, high + array.dtype.itemsize


def _is_device_array(value):
    """A Numba device array: a real one, or the simulator's (which has no __cuda_array_interface__)."""
    return hasattr(value, "copy_to_host") and hasattr(value, "is_c_contiguous")


# ----------------------------------------------------------------------------- the table

class Contract:
    """One kernel's arguments: arrays {name: shape}, the names written, the int64 arrays, the arrays of a float
    dtype of their own, scalar checks {name: check(name, value) -> message or None} and an arithmetic rule."""

    def __init__(self, arrays, written, int64=(), own_float=(), scalars=None, rule=None):
        self.shapes = {name: _parse(spec) for name, spec in arrays.items()}
        self.specs = dict(arrays)
        self.written = tuple(written)
        self.int64 = frozenset(int64)
        self.own_float = frozenset(own_float)
        self.floats = tuple(name for name in arrays if name not in self.int64 and name not in self.own_float)
        self.scalars = dict(scalars or {})
        self.rule = rule
        every_dim = {dim for shape, _ in self.shapes.values() for dim in shape}
        # the sizes a call starts from: each literal size is its own, each named one 0 until an array gives it
        self._literal_sizes = {dim: dim for dim in every_dim if isinstance(dim, int)}
        self._named_dims = tuple(dim for dim in every_dim if isinstance(dim, str))

    def check(self, args, device=False):
        """A ValueError naming the first argument in `args` ({name: value}) that breaks the contract. The arrays
        are numpy arrays, or also Numba device arrays when `device` (a CUDA launcher's arguments)."""
        dims = dict(self._literal_sizes)
        agree = True
        for name, (shape, absent) in self.shapes.items():
            array = args[name]
            if not isinstance(array, np.ndarray) and not (device and _is_device_array(array)):
                _fail(f"{name} must be a numpy array{' or a Numba CUDA device array' if device else ''}, got "
                      f"{type(array).__name__}")
            if array.shape == absent:
                continue
            if array.ndim != len(shape):
                agree = False
                break
            for dim, size in zip(shape, array.shape):
                if dims.setdefault(dim, size) != size:
                    agree = False
        if not agree:
            self._shape_error(args)
        floats = self.floats
        dtype = args[floats[0]].dtype
        if dtype not in FLOAT_DTYPES or any(args[name].dtype != dtype for name in floats) or (self.int64 and any(
                args[name].dtype != np.int64 for name in self.int64)) or (self.own_float and any(
                args[name].dtype not in FLOAT_DTYPES for name in self.own_float)):
            self._dtype_error(args)
        for name in self.written:  # a device array has no read-only form
            if isinstance(args[name], np.ndarray) and not args[name].flags.writeable:
                _fail(f"{name} must be a writeable array (the kernel writes it), got a read-only one")
        for name, check in self.scalars.items():
            message = check(name, args[name])
            if message:
                _fail(message)
        if self.rule is not None:
            for dim in self._named_dims:  # named only by absent arrays
                dims.setdefault(dim, 0)
            self.rule(dims, args)

    def _shape_error(self, args):
        """The ValueError for arrays whose shapes do not agree, naming the first one that disagrees with most."""
        present = self._present(args)
        dims = self._dimensions(args, present)
        for name in present:
            shape, _ = self.shapes[name]
            expected = tuple(dims[dim] if isinstance(dim, str) else dim for dim in shape)
            if args[name].shape != expected:
                _fail(f"{name} must have shape {expected}{self._layout(name)}, got {args[name].shape}"
                      f"{self._disagreement(name, args, present, expected)}")

    def _present(self, args):
        """The arrays that are not the empty placeholder for "absent", after checking each one's dimensions."""
        present = []
        for name, (shape, absent) in self.shapes.items():
            array = args[name]
            if absent is not None and array.shape == absent:
                continue
            if array.ndim != len(shape):
                alternative = f" or the empty placeholder {absent}" if absent is not None else ""
                _fail(f"{name} must be {len(shape)}-D with layout ({self.specs[name].split('|')[0].strip()})"
                      f"{alternative}, got shape {array.shape}")
            present.append(name)
        return present

    def _dimensions(self, args, present):
        """{dimension name: size}: the size most of the present arrays give it, the first one's on a tie."""
        votes = collections.defaultdict(collections.Counter)
        for name in present:
            for dim, size in zip(self.shapes[name][0], args[name].shape):
                if isinstance(dim, str):
                    votes[dim][size] += 1
        return {dim: counter.most_common(1)[0][0] for dim, counter in votes.items()}

    def _layout(self, name):
        spec = self.specs[name].split("|")[0].split()
        return f" ({', '.join(spec)})" if len(spec) > 1 else ""

    def _disagreement(self, name, args, present, expected):
        """Where the expected sizes came from: the other arrays that give the first disagreeing dimension."""
        shape = self.shapes[name][0]
        for dim, want, got in zip(shape, expected, args[name].shape):
            if want != got and isinstance(dim, str):
                others = [other for other in present if other != name and any(
                    d == dim and size == want for d, size in zip(self.shapes[other][0], args[other].shape))]
                if others:
                    return f": {dim} = {want} in {', '.join(others)}"
        return ""

    def _dtype_error(self, args):
        """The ValueError for a dtype that does not fit, naming the first float array that disagrees with most."""
        floats = self.floats
        counts = collections.Counter(args[name].dtype for name in floats)
        dtype = counts.most_common(1)[0][0]
        if dtype not in FLOAT_DTYPES:
            _fail(f"{floats[0]} and the other float arrays must be float32 or float64, got {dtype.name}")
        for name in floats:
            if args[name].dtype != dtype:
                like = next(other for other in floats if args[other].dtype == dtype)
                _fail(f"{name} must be {dtype.name} like {like}, got {args[name].dtype.name}")
        for name in self.int64:
            if args[name].dtype != np.int64:
                _fail(f"{name} must be int64, got {args[name].dtype.name}")
        for name in self.own_float:
            if args[name].dtype not in FLOAT_DTYPES:
                _fail(f"{name} must be float32 or float64, got {args[name].dtype.name}")


def _parse(spec):
    """"N C S | 0 0 0" -> (("N", "C", "S"), (0, 0, 0)); the second item is None without a placeholder."""
    shape, _, absent = spec.partition("|")

    def dims(text):
        return tuple(int(token) if token.isdigit() else token for token in text.split())
    return dims(shape), (dims(absent) if absent else None)


def _elementwise(*names, scalars=None):
    """Flat arrays of one length, the last written."""
    return Contract({name: "L" for name in names}, written=names[-1:], scalars=scalars)


_CONV_HYPER = {"stride_h": integer(1), "stride_w": integer(1), "padding_h": integer(0), "padding_w": integer(0),
               "dilation_h": integer(1), "dilation_w": integer(1), "groups": integer(1)}
_LOCAL_HYPER = {"stride_h": integer(1), "stride_w": integer(1), "padding_h": integer(0), "padding_w": integer(0)}
_BATCH_NORM_SCALARS = {"momentum": real_in(0.0, 1.0), "eps": POSITIVE, "training": FLAG}
_SGD_SCALARS = {"lr": real, "momentum": real, "nesterov": FLAG}
_ADAM_SCALARS = {"lr": real, "beta1": real, "beta2": real, "eps": real, "step": integer(1)}
_PER_CHANNEL = "C | 0"  # (C,), or (0,) for none
_ROWS = "N C S"  # (N, C, S): S the positions per channel

CONTRACTS = {
    "relu_forward": _elementwise("input", "output"),
    "relu_backward": _elementwise("grad_output", "input", "grad_input"),
    "relu6_forward": _elementwise("input", "output"),
    "relu6_backward": _elementwise("grad_output", "input", "grad_input"),
    "leaky_relu_forward": _elementwise("input", "output", scalars={"negative_slope": real}),
    "leaky_relu_backward": _elementwise("grad_output", "input", "grad_input", scalars={"negative_slope": real}),
    "sigmoid_forward": _elementwise("input", "output"),
    "sigmoid_backward": _elementwise("grad_output", "input", "grad_input"),
    "tanh_forward": _elementwise("input", "output"),
    "tanh_backward": _elementwise("grad_output", "input", "grad_input"),
    "add_forward": _elementwise("input", "other", "output"),
    # weight (D, G, KH, KW): G = C / groups input channels a filter
    "conv2d_forward": Contract(
        {"input": "N C H W", "weight": "D G KH KW", "bias": "D | 0", "output": "N D OH OW"}, written=("output",),
        scalars=_CONV_HYPER, rule=_conv_rule("input", "weight", "output")),
    "conv2d_backward_input": Contract(
        {"grad_output": "N D OH OW", "weight": "D G KH KW", "grad_input": "N C H W"}, written=("grad_input",),
        scalars=_CONV_HYPER, rule=_conv_rule("grad_input", "weight", "grad_output")),
    "conv2d_backward_weight": Contract(
        {"grad_output": "N D OH OW", "input": "N C H W", "grad_weight": "D G KH KW"}, written=("grad_weight",),
        scalars=_CONV_HYPER, rule=_conv_rule("input", "grad_weight", "grad_output")),
    "conv2d_backward_weight_bias": Contract(
        {"grad_output": "N D OH OW", "input": "N C H W", "grad_weight": "D G KH KW", "grad_bias": "D"},
        written=("grad_weight", "grad_bias"), scalars=_CONV_HYPER,
        rule=_conv_rule("input", "grad_weight", "grad_output")),
    "conv2d_backward_bias": Contract({"grad_output": "N D OH OW", "grad_bias": "D"}, written=("grad_bias",)),
    # input (N, I), weight (O, I): output = input @ weight.T + bias
    "linear_forward": Contract({"input": "N I", "weight": "O I", "bias": "O | 0", "output": "N O"},
                               written=("output",)),
    "linear_relu_forward": Contract({"input": "N I", "weight": "O I", "bias": "O | 0", "output": "N O"},
                                    written=("output",)),
    "linear_backward_input": Contract({"grad_output": "N O", "weight": "O I", "grad_input": "N I"},
                                      written=("grad_input",)),
    "linear_relu_backward_input": Contract(
        {"grad_output": "N O", "output": "N O", "weight": "O I", "grad_input": "N I"}, written=("grad_input",)),
    "linear_backward_weight": Contract({"grad_output": "N O", "input": "N I", "grad_weight": "O I"},
                                       written=("grad_weight",)),
    "linear_backward_bias": Contract({"grad_output": "N O", "grad_bias": "O"}, written=("grad_bias",)),
    "linear_backward_weight_bias": Contract(
        {"grad_output": "N O", "input": "N I", "grad_weight": "O I", "grad_bias": "O"},
        written=("grad_weight", "grad_bias")),
    "linear_relu_backward_weight_bias": Contract(
        {"grad_output": "N O", "output": "N O", "input": "N I", "grad_weight": "O I", "grad_bias": "O | 0"},
        written=("grad_weight", "grad_bias")),
    "dropout_forward": Contract(
        {"input": "L", "noise": "L", "output": "L", "mask": "L"}, written=("output", "mask"),
        scalars={"probability": real_in(0.0, 1.0, high_included=False)}),
    "dropout_backward": _elementwise("grad_output", "mask", "grad_input"),
    # (outer, extent, inner) views: E the part's extent, T the joined one
    "cat_forward": Contract({"input": "A E Q", "output": "A T Q"}, written=("output",),
                            scalars={"offset": integer(0)}, rule=_cat_rule("input")),
    "cat_backward": Contract({"grad_output": "A T Q", "grad_input": "A E Q"}, written=("grad_input",),
                             scalars={"offset": integer(0)}, rule=_cat_rule("grad_input")),
    "batch_norm_stats": Contract(
        {"input": _ROWS, "running_mean": _PER_CHANNEL, "running_var": _PER_CHANNEL, "mean": "C", "invstd": "C"},
        written=("running_mean", "running_var", "mean", "invstd"), scalars=_BATCH_NORM_SCALARS,
        rule=_batch_norm_rule),
    "batch_norm_forward": Contract(
        {"input": _ROWS, "weight": _PER_CHANNEL, "bias": _PER_CHANNEL, "running_mean": _PER_CHANNEL,
         "running_var": _PER_CHANNEL, "output": _ROWS, "mean": "C", "invstd": "C"},
        written=("running_mean", "running_var", "output", "mean", "invstd"), scalars=_BATCH_NORM_SCALARS,
        rule=_batch_norm_rule),
    "batch_norm_backward": Contract(
        {"grad_output": _ROWS, "input": _ROWS, "weight": _PER_CHANNEL, "mean": "C", "invstd": "C",
         "grad_input": "N C S | 0 0 0", "grad_weight": _PER_CHANNEL, "grad_bias": _PER_CHANNEL},
        written=("grad_input", "grad_weight", "grad_bias"), scalars={"training": FLAG}),
    "batch_norm_relu_forward": Contract(
        {"input": _ROWS, "weight": _PER_CHANNEL, "bias": _PER_CHANNEL, "running_mean": _PER_CHANNEL,
         "running_var": _PER_CHANNEL, "residual": "N C S | 0 0 0", "output": _ROWS, "mean": "C", "invstd": "C"},
        written=("running_mean", "running_var", "output", "mean", "invstd"), scalars=_BATCH_NORM_SCALARS,
        rule=_batch_norm_rule),
    "batch_norm_relu_backward": Contract(
        {"grad_output": _ROWS, "output": _ROWS, "input": _ROWS, "weight": _PER_CHANNEL, "mean": "C",
         "invstd": "C", "grad_input": "N C S | 0 0 0", "grad_weight": _PER_CHANNEL, "grad_bias": _PER_CHANNEL},
        written=("grad_input", "grad_weight", "grad_bias"), scalars={"training": FLAG}),
    "scale_shift_forward": Contract(
        {"input": _ROWS, "scale": _PER_CHANNEL, "shift": _PER_CHANNEL, "residual": "N C S | 0 0 0",
         "output": _ROWS}, written=("output",), scalars={"activation": one_of(0, 1, 2)}),
    "local_response_norm_forward": Contract(
        {"input": _ROWS, "output": _ROWS}, written=("output",),
        scalars={"size": integer(1), "alpha": real, "beta": real, "k": real}, rule=_apart(("output", "input"))),
    "local_response_norm_backward": Contract(
        {"grad_output": _ROWS, "input": _ROWS, "grad_input": _ROWS}, written=("grad_input",),
        scalars={"size": integer(1), "alpha": real, "beta": real, "k": real},
        rule=_apart(("grad_input", "input"), ("grad_input", "grad_output"))),
    "max_pool2d_forward": Contract(
        {"input": "N C H W", "output": "N C OH OW", "indices": "N C OH OW | 0 0 0 0"}, written=("output", "indices"),
        int64=("indices",), rule=_pool_rule("output", "input")),
    "max_pool2d_backward": Contract(
        {"grad_output": "N C OH OW", "indices": "N C OH OW", "grad_input": "N C H W"}, written=("grad_input",),
        int64=("indices",), rule=_pool_rule("grad_output", "grad_input")),
    "avg_pool2d_forward": Contract(
        {"input": "N C H W", "output": "N C OH OW"}, written=("output",), scalars={"count_include_pad": FLAG},
        rule=_pool_rule("output", "input")),
    "avg_pool2d_backward": Contract(
        {"grad_output": "N C OH OW", "grad_input": "N C H W"}, written=("grad_input",),
        scalars={"count_include_pad": FLAG}, rule=_pool_rule("grad_output", "grad_input")),
    "global_avg_pool2d_forward": Contract({"input": "N C H W", "output": "N C 1 1"}, written=("output",),
                                          rule=_plane_rule("input")),
    "global_avg_pool2d_backward": Contract({"grad_output": "N C 1 1", "grad_input": "N C H W"},
                                           written=("grad_input",), rule=_plane_rule("grad_input")),
    "adaptive_avg_pool2d_forward": Contract({"input": "N C H W", "output": "N C OH OW"}, written=("output",),
                                            rule=_plane_rule("input")),
    "adaptive_avg_pool2d_backward": Contract({"grad_output": "N C OH OW", "grad_input": "N C H W"},
                                             written=("grad_input",), rule=_plane_rule("grad_input")),
    "adaptive_max_pool2d_forward": Contract(
        {"input": "N C H W", "output": "N C OH OW", "indices": "N C OH OW | 0 0 0 0"},
        written=("output", "indices"), int64=("indices",), rule=_plane_rule("input")),
    "adaptive_max_pool2d_backward": Contract(
        {"grad_output": "N C OH OW", "indices": "N C OH OW", "grad_input": "N C H W"}, written=("grad_input",),
        int64=("indices",), rule=_plane_rule("grad_input")),
    # weight (OH, OW, D, C, KH, KW): one filter bank per output position
    "local_conv2d_forward": Contract(
        {"input": "N C H W", "weight": "OH OW D C KH KW", "bias": "D OH OW | 0 0 0", "output": "N D OH OW"},
        written=("output",), scalars=_LOCAL_HYPER, rule=_local_rule("weight")),
    "local_conv2d_backward_input": Contract(
        {"grad_output": "N D OH OW", "weight": "OH OW D C KH KW", "grad_input": "N C H W"},
        written=("grad_input",), scalars=_LOCAL_HYPER, rule=_local_rule("weight")),
    "local_conv2d_backward_weight": Contract(
        {"grad_output": "N D OH OW", "input": "N C H W", "grad_weight": "OH OW D C KH KW"},
        written=("grad_weight",), scalars=_LOCAL_HYPER, rule=_local_rule("grad_weight")),
    "local_conv2d_backward_bias": Contract({"grad_output": "N D OH OW", "grad_bias": "D OH OW"},
                                           written=("grad_bias",)),
    "softmax_cross_entropy": Contract(
        {"logits": "N K", "labels": "N", "losses": "N", "grad_logits": "N K"}, written=("losses", "grad_logits"),
        int64=("labels",), rule=_labels_rule),
    "sgd_update": Contract({"param": "L", "grad": "L", "velocity": "L"}, written=("param", "velocity"),
                           scalars=dict(_SGD_SCALARS, weight_decay=real)),
    "adam_update": Contract({"param": "L", "grad": "L", "exp_avg": "L", "exp_avg_sq": "L"},
                            written=("param", "exp_avg", "exp_avg_sq"), scalars=dict(_ADAM_SCALARS, weight_decay=real)),
    # every parameter back to back; segment s ends at segment_ends[s] and decays by segment_decay[s]
    "sgd_update_flat": Contract(
        {"param": "L", "grad": "L", "velocity": "L", "segment_ends": "S", "segment_decay": "S"},
        written=("param", "velocity"), int64=("segment_ends",), own_float=("segment_decay",),
        scalars=_SGD_SCALARS, rule=_segments_rule),
    "adam_update_flat": Contract(
        {"param": "L", "grad": "L", "exp_avg": "L", "exp_avg_sq": "L", "segment_ends": "S", "segment_decay": "S"},
        written=("param", "exp_avg", "exp_avg_sq"), int64=("segment_ends",), own_float=("segment_decay",),
        scalars=_ADAM_SCALARS, rule=_segments_rule),
}


# ----------------------------------------------------------------------------- the checked functions

def checked(name, kernel, device=False):
    """The public function for kernel `name`: a function of the same name and parameters that checks the call
    against CONTRACTS[name] first, taking numpy arrays, or also Numba device arrays when `device` (a CUDA
    launcher). A CPU kernel in SELF_CHECKED is returned as it is; a name not in CONTRACTS is a KeyError: none
    is exported unchecked."""
    contract = CONTRACTS[name]
    if name in SELF_CHECKED and not device:
        return kernel
    signature = inspect.signature(getattr(kernel, "py_func", kernel))
    parameters = tuple(signature.parameters)
    check = functools.partial(contract.check, device=device)

    @functools.wraps(kernel, updated=())  # not the kernel's __dict__ (a Numba dispatcher's state)
    def call(*args, **kwargs):
        if kwargs or len(args) != len(parameters):
            check(signature.bind(*args, **kwargs).arguments)
        else:
            check(dict(zip(parameters, args)))
        return kernel(*args, **kwargs)

    call.__signature__ = signature
    call.contract = contract
    return call
