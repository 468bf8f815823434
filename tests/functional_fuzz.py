"""Seeded property-based calls of every public function in nbconv.functional, valid and invalid.

Each case must end as a clean ValueError/TypeError, or return a result equal to an independent float64
reference (tests/reference.py and the small references below). Run as

    python -m tests.functional_fuzz SEED EXAMPLES

which runs EXAMPLES hypothesis examples from SEED and prints each case as a JSON line *before* running
it, so that when a call kills the interpreter the parent (tests/test_functional_fuzz.py) can name it.
Functions in nbconv.functional.__all__ without a builder here are still called, with junk arguments
(None, lists, ints, arrays of the wrong dtype or rank), and must fail cleanly.
"""
import inspect
import json
import sys

import numpy as np
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import nbconv.functional as F
from tests import reference

CLEAN = (ValueError, TypeError)
JUNK_HYPER = [-1, 0, 2 ** 64, -2 ** 63, 1.5, float("nan"), "a", None, (1,), (1, 2, 3), True, 10 ** 9, [2, 2]]
JUNK_ARRAYS = [None, [[1.0, 2.0]], 3.0, "x", np.zeros((2, 2), np.int32), np.zeros((), np.float32),
               np.zeros((2, 3), bool), np.zeros((1, 2, 3, 4, 5, 6, 7), np.float32)]


class Case:
    """One call: the function's name, its arguments, and how to check a result (None: any result)."""

    def __init__(self, name, args, kwargs=None, check=None):
        self.name, self.args, self.kwargs, self.check = name, list(args), dict(kwargs or {}), check

    def describe(self):
        def show(value):
            if isinstance(value, np.ndarray):
                return f"array{tuple(value.shape)}:{value.dtype}"
            if isinstance(value, (np.random.Generator, np.random.RandomState)):
                return type(value).__name__
            return repr(value)
        arguments = [show(a) for a in self.args] + [f"{k}={show(v)}" for k, v in self.kwargs.items()]
        return f"{self.name}({', '.join(arguments)})"


# ----------------------------------------------------------------------------- drawing helpers

def _array(draw, shape, dtype):
    values = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1))).standard_normal(shape)
    return values.astype(dtype)


def _dtype(draw):
    return draw(st.sampled_from([np.float32, np.float32, np.float32, np.float64]))


_mutated = []  # set when a case's arguments no longer match what its reference was built from


def _maybe_broken(draw, array):
    """Mostly the array itself; sometimes another dtype or rank, or not an array at all. When the array
    changes, a successful call is accepted without its reference check (the call may read the new shape
    another valid way), but it must still not crash or raise anything but a clean error."""
    choice = draw(st.integers(0, 19))
    if 0 <= choice <= 3 and not (choice == 3 and array.ndim <= 1):
        _mutated.append(choice)
    if choice == 0:
        return draw(st.sampled_from(JUNK_ARRAYS))
    if choice == 1:
        return array.astype(draw(st.sampled_from([np.int32, np.float16, np.int64, np.complex64])))
    if choice == 2:
        return array.reshape(array.shape + (1,))
    if choice == 3 and array.ndim > 1:
        return array.reshape(array.shape[:-2] + (array.shape[-2] * array.shape[-1],))
    if choice == 4 and array.ndim >= 2:  # the same values in another memory order (0-d would become 1-d)
        return np.asfortranarray(array)
    return array


def _hyper(draw, low, high=3, pair=True):
    valid = st.integers(low, high)
    if pair:
        valid = st.one_of(valid, st.tuples(st.integers(low, high), st.integers(low, high)))
    return draw(st.one_of(valid, valid, valid, st.sampled_from(JUNK_HYPER)))


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _close(got, expected, dtype):
    tolerance = 1e-3 if np.dtype(dtype) == np.float32 else 1e-8
    got = np.asarray(got)
    assert got.shape == expected.shape, f"shape {got.shape}, expected {expected.shape}"
    assert got.dtype == np.dtype(dtype), f"dtype {got.dtype}, expected {np.dtype(dtype)}"
    np.testing.assert_allclose(got, expected, rtol=tolerance, atol=tolerance)


# ----------------------------------------------------------------------------- convolutions

def _conv_padding(padding, kernel, dilation):
    """The reference's ((top, bottom), (left, right)) for a padding argument that the call accepted."""
    if padding == "valid":
        return ((0, 0), (0, 0))
    if padding == "same":
        totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
        return tuple((t // 2, t - t // 2) for t in totals)
    return tuple((p, p) for p in _pair(padding))


def _conv_draw(draw, one_d):
    dtype = _dtype(draw)
    groups = draw(st.sampled_from([1, 1, 1, 2, 3]))
    N, Cg, Dg = draw(st.integers(0, 2)), draw(st.integers(0, 3)), draw(st.integers(0, 3))
    H = 1 if one_d else draw(st.integers(0, 7))
    W, KH, KW = draw(st.integers(0, 8)), 1 if one_d else draw(st.integers(0, 4)), draw(st.integers(0, 4))
    x = _array(draw, (N, Cg * groups, H, W), dtype)
    w = _array(draw, (Dg * groups, Cg, KH, KW), dtype)
    hyper = dict(stride=_hyper(draw, 1, pair=not one_d), dilation=_hyper(draw, 1, 2, pair=not one_d),
                 padding=draw(st.one_of(st.just(_hyper(draw, 0, pair=not one_d)), st.sampled_from(["same", "valid"]))),
                 groups=draw(st.one_of(st.just(groups), st.sampled_from(JUNK_HYPER))))
    if one_d:
        x, w = x[:, :, 0], w[:, :, 0]
    unbatched = draw(st.integers(0, 5)) == 0 and N == 1
    if unbatched:
        x = x[0]
    return x, w, hyper, dtype


def _conv_reference(x, w, hyper, one_d):
    """(x4, w4, reference hyper-parameters) in the 2-D, batched form of tests/reference.py."""
    x4 = x if x.ndim == (3 if one_d else 4) else x[None]
    if one_d:
        x4, w = x4[:, :, None, :], w[:, :, None, :]
    stride = (1, hyper["stride"] if isinstance(hyper["stride"], int) else hyper["stride"][0]) if one_d else \
        _pair(hyper["stride"])
    dilation = (1, hyper["dilation"] if isinstance(hyper["dilation"], int) else hyper["dilation"][0]) if one_d \
        else _pair(hyper["dilation"])
    padding = hyper["padding"]
    if one_d and not isinstance(padding, str):
        padding = (0, padding if isinstance(padding, int) else padding[0])
    return x4, w, dict(stride=stride, padding=_conv_padding(padding, w.shape[2:], dilation), dilation=dilation,
                       groups=hyper["groups"])


def _conv_case(draw, name):
    one_d = name.startswith("conv1d")
    x, w, hyper, dtype = _conv_draw(draw, one_d)
    squeeze = x.ndim == (2 if one_d else 3)

    def as_given(array4):  # the reference's (N, D, OH, OW) in the call's layout
        array = array4[:, :, 0] if one_d else array4
        return array[0] if squeeze else array

    if name.endswith("_backward"):
        try:
            y = (F.conv1d if one_d else F.conv2d)(x, w, **hyper)
            grad_y = _array(draw, y.shape, dtype)
        except CLEAN:
            grad_y = _array(draw, (1, 1, 1), dtype)
        grad_y = _maybe_broken(draw, grad_y)
        args = [grad_y, _maybe_broken(draw, x), _maybe_broken(draw, w)]

        def check(result):
            x4, w4, ref = _conv_reference(x, w, hyper, one_d)
            out_h = 1 if one_d else grad_y.shape[-2]  # explicit sizes: -1 fails on empty arrays
            g4 = grad_y.reshape((x4.shape[0], w4.shape[0], out_h, grad_y.shape[-1]))
            expected_x = reference.conv2d_backward_input(g4, w4, x4.shape, **ref)
            expected_w = reference.conv2d_backward_weight(g4, x4, w4.shape, **ref)
            _close(result[0], as_given(expected_x) if not one_d else as_given(expected_x), dtype)
            _close(result[1], expected_w.reshape(w.shape), dtype)
            _close(result[2], g4.astype(np.float64).sum(axis=(0, 2, 3)), dtype)
        return Case(name, args, hyper, check)

    bias = draw(st.one_of(st.none(), st.just(_array(draw, (w.shape[0],), dtype)),
                          st.just(_array(draw, (w.shape[0] + 1,), dtype))))
    args = [_maybe_broken(draw, x), _maybe_broken(draw, w), bias]

    def check(result):
        x4, w4, ref = _conv_reference(x, w, hyper, one_d)
        _close(result, as_given(reference.conv2d(x4, w4, bias, **ref)), dtype)
    return Case(name, args, hyper, check)


# ----------------------------------------------------------------------------- pooling

def _pool_windows(shape, kernel, stride, padding, ceil_mode):
    """The output size by PyTorch's rule, and each window's clipped [h0, h1) x [w0, w1)."""
    sizes = []
    for axis in range(2):
        size = shape[2 + axis]
        out = (size + 2 * padding[axis] - kernel[axis] + (stride[axis] - 1 if ceil_mode else 0)) // stride[axis] + 1
        if ceil_mode and (out - 1) * stride[axis] >= size + padding[axis]:
            out -= 1
        sizes.append(out)
    return tuple(sizes)


def _pool_reference_backward(x, grad_y, kernel, stride, padding, mode, count_include_pad=True):
    """The gradient of max (to the first maximum of each window) or average pooling, window by window."""
    x = np.asarray(x, np.float64)
    grad = np.zeros_like(x)
    H, W = x.shape[2], x.shape[3]
    for oh in range(grad_y.shape[2]):
        for ow in range(grad_y.shape[3]):
            h0, w0 = oh * stride[0] - padding[0], ow * stride[1] - padding[1]
            h1, w1 = min(h0 + kernel[0], H + padding[0]), min(w0 + kernel[1], W + padding[1])
            lo_h, hi_h, lo_w, hi_w = max(h0, 0), min(h1, H), max(w0, 0), min(w1, W)
            for n in range(x.shape[0]):
                for c in range(x.shape[1]):
                    g = grad_y[n, c, oh, ow]
                    if mode == "max":
                        window = x[n, c, lo_h:hi_h, lo_w:hi_w]
                        i, j = np.unravel_index(np.argmax(window), window.shape)
                        grad[n, c, lo_h + i, lo_w + j] += g
                    else:
                        divisor = (h1 - h0) * (w1 - w0) if count_include_pad else (hi_h - lo_h) * (hi_w - lo_w)
                        grad[n, c, lo_h:hi_h, lo_w:hi_w] += g / divisor
    return grad


def _pool_case(draw, name):
    dtype = _dtype(draw)
    mode = "max" if name.startswith("max") else "avg"
    shape = (draw(st.integers(0, 2)), draw(st.integers(0, 3)), draw(st.integers(0, 7)), draw(st.integers(0, 7)))
    x = _array(draw, shape, dtype)
    kernel_size = _hyper(draw, 1, 4)
    hyper = dict(stride=draw(st.one_of(st.none(), st.just(_hyper(draw, 1)))), padding=_hyper(draw, 0, 2),
                 ceil_mode=draw(st.booleans()))
    if mode == "avg":
        hyper["count_include_pad"] = draw(st.booleans())

    def geometry():
        kernel = _pair(kernel_size)
        stride = kernel if hyper["stride"] is None else _pair(hyper["stride"])
        return kernel, stride, _pair(hyper["padding"])

    def forward_reference():
        kernel, stride, padding = geometry()
        out = _pool_windows(shape, kernel, stride, padding, hyper["ceil_mode"])
        return reference.pool2d(x, kernel, stride, padding, shape[:2] + out, mode,
                                hyper.get("count_include_pad", True))

    if name.endswith("_backward"):
        try:
            y = (F.max_pool2d if mode == "max" else F.avg_pool2d)(x, kernel_size, **hyper)
            grad_y = _array(draw, y.shape, dtype)
        except CLEAN:
            grad_y = _array(draw, (1, 1, 1, 1), dtype)
        args = [_maybe_broken(draw, grad_y), _maybe_broken(draw, x), kernel_size]
        if mode == "max" and draw(st.booleans()):
            try:
                indices = F.max_pool2d(x, kernel_size, **hyper, return_indices=True)[1]
            except CLEAN:
                indices = np.zeros((1, 1, 1, 1), np.int64)
            hyper = dict(hyper, indices=draw(st.sampled_from([indices, indices, indices + 10 ** 6, -indices - 1,
                                                               indices.astype(np.int32), indices.tolist(), 1.5])))

        def check(result):
            kernel, stride, padding = geometry()
            expected = _pool_reference_backward(x, grad_y, kernel, stride, padding, mode,
                                                hyper.get("count_include_pad", True))
            _close(result, expected, dtype)
        return Case(name, args, hyper, check)

    args = [_maybe_broken(draw, x), kernel_size]
    if mode == "max":
        hyper["return_indices"] = draw(st.booleans())

    def check(result):
        expected = forward_reference()
        if hyper.get("return_indices"):
            result, indices = result
            plane = x.reshape(shape[0], shape[1], shape[2] * shape[3])  # explicit sizes: -1 fails on empty arrays
            outputs = int(np.prod(indices.shape[2:]))
            picked = np.take_along_axis(plane, indices.reshape(shape[0], shape[1], outputs), axis=2)
            _close(picked.reshape(expected.shape), expected, dtype)
        _close(result, expected, dtype)
    return Case(name, args, hyper, check)


def _global_pool_case(draw, name):
    dtype = _dtype(draw)
    shape = (draw(st.integers(0, 2)), draw(st.integers(0, 3)), draw(st.integers(0, 5)), draw(st.integers(0, 5)))
    x = _array(draw, shape, dtype)
    if name.endswith("_backward"):
        grad_y = _array(draw, shape[:2] + (1, 1), dtype)
        return Case(name, [_maybe_broken(draw, grad_y), _maybe_broken(draw, x)], check=lambda result: _close(
            result, np.broadcast_to(grad_y.astype(np.float64) / (shape[2] * shape[3]), shape), dtype))
    return Case(name, [_maybe_broken(draw, x)],
                check=lambda result: _close(result, x.astype(np.float64).mean(axis=(2, 3), keepdims=True), dtype))


# ----------------------------------------------------------------------------- element-wise, linear, local, loss

ACTIVATIONS = {  # name: (forward, derivative) in float64
    "relu": (lambda x, s: np.maximum(x, 0), lambda x, s: (x > 0).astype(np.float64)),
    "relu6": (lambda x, s: np.clip(x, 0, 6), lambda x, s: ((x > 0) & (x < 6)).astype(np.float64)),
    "leaky_relu": (lambda x, s: np.where(x > 0, x, s * x), lambda x, s: np.where(x > 0, 1.0, s)),
    "sigmoid": (lambda x, s: 1 / (1 + np.exp(-x)), lambda x, s: np.exp(-x) / (1 + np.exp(-x)) ** 2),
    "tanh": (lambda x, s: np.tanh(x), lambda x, s: 1 - np.tanh(x) ** 2),
}


def _activation_case(draw, name):
    dtype = _dtype(draw)
    base = name.replace("_backward", "")
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=0, max_size=4)))
    x = _array(draw, shape, dtype)
    if base == "relu6":  # spread the values past 6 too
        x = np.asarray(x * 4, dtype)
    kwargs = {}
    slope = 0.01
    if base == "leaky_relu" and draw(st.booleans()):
        slope = draw(st.sampled_from([0.2, -1.0, 0, "a", None]))
        kwargs["negative_slope"] = slope
    forward, derivative = ACTIVATIONS[base]
    x64 = x.astype(np.float64)
    if name.endswith("_backward"):
        grad_y = _array(draw, shape, dtype)
        return Case(name, [_maybe_broken(draw, grad_y), _maybe_broken(draw, x)], kwargs,
                    lambda result: _close(result, grad_y * derivative(x64, slope), dtype))
    return Case(name, [_maybe_broken(draw, x)], kwargs, lambda result: _close(result, forward(x64, slope), dtype))


def _linear_case(draw, name):
    dtype = _dtype(draw)
    N, I, O = draw(st.integers(0, 3)), draw(st.integers(0, 4)), draw(st.integers(0, 4))
    x, w = _array(draw, (N, I), dtype), _array(draw, (O, I), dtype)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    if name.endswith("_backward"):
        grad_y = _array(draw, (N, O), dtype)
        need = draw(st.booleans())

        def check(result):
            if need:
                _close(result[0], grad_y @ w64, dtype)
            else:
                assert result[0] is None
            _close(result[1], grad_y.T.astype(np.float64) @ x64, dtype)
            _close(result[2], grad_y.astype(np.float64).sum(axis=0), dtype)
        return Case(name, [_maybe_broken(draw, grad_y), _maybe_broken(draw, x), _maybe_broken(draw, w), need],
                    check=check)
    bias = draw(st.one_of(st.none(), st.just(_array(draw, (O,), dtype))))
    return Case(name, [_maybe_broken(draw, x), _maybe_broken(draw, w), bias],
                check=lambda result: _close(result, x64 @ w64.T + (0 if bias is None else bias), dtype))


def _linear_relu_case(draw, name):
    """linear_relu(x, w, b) = max(x w^T + b, 0); its backward takes the ReLU's output gradient and output."""
    dtype = _dtype(draw)
    N, I, O = draw(st.integers(0, 3)), draw(st.integers(0, 4)), draw(st.integers(0, 4))
    x, w = _array(draw, (N, I), dtype), _array(draw, (O, I), dtype)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    bias = draw(st.one_of(st.none(), st.just(_array(draw, (O,), dtype))))
    pre = x64 @ w64.T + (0 if bias is None else bias)
    if name.endswith("_backward"):
        grad_y, output = _array(draw, (N, O), dtype), np.maximum(pre, 0).astype(dtype)
        need = draw(st.booleans())
        grad_pre = grad_y.astype(np.float64) * (output > 0)

        def check(result):
            if need:
                _close(result[0], grad_pre @ w64, dtype)
            else:
                assert result[0] is None
            _close(result[1], grad_pre.T @ x64, dtype)
            _close(result[2], grad_pre.sum(axis=0), dtype)
        return Case(name, [_maybe_broken(draw, grad_y), _maybe_broken(draw, output), _maybe_broken(draw, x),
                           _maybe_broken(draw, w), need], check=check)
    return Case(name, [_maybe_broken(draw, x), _maybe_broken(draw, w), bias],
                check=lambda result: _close(result, np.maximum(pre, 0), dtype))


def _local_gathered(x, w, stride, padding):
    """(the input taps each output position reads, (N, C, OH, KH, OW, KW), zero outside the input; the
    (row, column) each reads; whether it lies inside): local_conv2d's windows read without padding the input
    (a padding of 10**9 with a stride of 10**9 is a valid call whose padded input would not fit in memory)."""
    x = np.asarray(x, np.float64)
    OH, OW, D, C, KH, KW = w.shape
    rows = np.arange(OH)[:, None] * stride[0] - padding[0] + np.arange(KH)[None]
    cols = np.arange(OW)[:, None] * stride[1] - padding[1] + np.arange(KW)[None]
    inside = ((rows >= 0) & (rows < x.shape[2]))[:, :, None, None] & ((cols >= 0) & (cols < x.shape[3]))[None, None]
    rows_clipped, cols_clipped = np.clip(rows, 0, max(x.shape[2] - 1, 0)), np.clip(cols, 0, max(x.shape[3] - 1, 0))
    if x.shape[2] == 0 or x.shape[3] == 0:
        return np.zeros(x.shape[:2] + (OH, KH, OW, KW)), rows_clipped, cols_clipped, inside
    taps = x[:, :, rows_clipped[:, :, None, None], cols_clipped[None, None]] * inside
    return taps, rows_clipped, cols_clipped, inside


def _local_reference(x, w, bias, stride, padding):
    if max(padding) <= 64:
        return reference.local_conv2d(x, w, bias, stride, padding)
    taps = _local_gathered(x, w, stride, padding)[0]
    out = np.einsum("ncaibj,abdcij->ndab", taps, np.asarray(w, np.float64))
    return out if bias is None else out + bias[None]


def _local_reference_backward(grad_y, x, w, stride, padding):
    if max(padding) <= 64:
        return reference.local_conv2d_backward(grad_y, x, w, stride, padding)
    taps, rows, cols, inside = _local_gathered(x, w, stride, padding)
    g, w64 = np.asarray(grad_y, np.float64), np.asarray(w, np.float64)
    grad_weight = np.einsum("ndab,ncaibj->abdcij", g, taps)
    grad_taps = np.einsum("ndab,abdcij->ncaibj", g, w64) * inside
    grad_input = np.zeros(x.shape)
    if grad_input.size:
        np.add.at(grad_input, (slice(None), slice(None), rows[:, :, None, None], cols[None, None]), grad_taps)
    return grad_input, grad_weight


def _local_case(draw, name):
    dtype = _dtype(draw)
    N, C, D = draw(st.integers(0, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    H, W, KH, KW = draw(st.integers(0, 6)), draw(st.integers(0, 6)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride, padding = _hyper(draw, 1), _hyper(draw, 0, 2)
    x = _array(draw, (N, C, H, W), dtype)
    try:
        OH, OW = F.local_conv2d_output_size(x.shape, (KH, KW), stride, padding)
    except CLEAN:
        OH, OW = 1, 1
    if OH * OW > 64:  # a huge padding: a small weight, which the call must refuse
        OH, OW = 1, 1
    OH, OW = OH + draw(st.sampled_from([0, 0, 0, 0, 1])), OW
    w = _array(draw, (OH, OW, D, C, KH, KW), dtype)
    hyper = dict(stride=stride, padding=padding)
    if name.endswith("_backward"):
        grad_y = _array(draw, (N, D, OH, OW), dtype)

        def check(result):
            grad_x, grad_w = _local_reference_backward(grad_y, x, w, _pair(stride), _pair(padding))
            _close(result[0], grad_x, dtype)
            _close(result[1], grad_w, dtype)
            _close(result[2], grad_y.astype(np.float64).sum(axis=0), dtype)
        return Case(name, [_maybe_broken(draw, grad_y), _maybe_broken(draw, x), _maybe_broken(draw, w)], hyper, check)
    bias = draw(st.one_of(st.none(), st.just(_array(draw, (D, OH, OW), dtype))))
    return Case(name, [_maybe_broken(draw, x), _maybe_broken(draw, w), bias], hyper, lambda result: _close(
        result, _local_reference(x, w, None if bias is None else bias.astype(np.float64), _pair(stride),
                                 _pair(padding)), dtype))


def _loss_case(draw, name):
    dtype = _dtype(draw)
    N, K = draw(st.integers(0, 4)), draw(st.integers(0, 5))
    logits = _array(draw, (N, K), dtype)
    labels = np.random.default_rng(draw(st.integers(0, 99))).integers(0, max(K, 1), N)
    labels = draw(st.sampled_from([labels, labels, labels, labels + K, labels.astype(np.float32), labels.tolist(),
                                   None, labels[:-1]]))

    def check(result):
        loss, grad = result
        if N:
            assert abs(loss - reference.softmax_cross_entropy(logits, labels)) < 1e-4
            shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
            expected = shifted / shifted.sum(axis=1, keepdims=True)
            expected[np.arange(N), labels] -= 1
            _close(grad, expected / N, dtype)
    return Case(name, [_maybe_broken(draw, logits), labels], check=check)


def _dropout_case(draw, name):
    dtype = _dtype(draw)
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=1, max_size=3)))
    x = _array(draw, shape, dtype)
    if name == "dropout_backward":
        mask = (np.random.default_rng(1).random(shape) > 0.5).astype(dtype) * 2
        return Case(name, [_maybe_broken(draw, x), _maybe_broken(draw, mask)],
                    check=lambda result: _close(result, x.astype(np.float64) * mask, dtype))
    probability = draw(st.sampled_from([0.0, 0.5, 0.9, 1.0, -0.1, float("nan"), "a", None]))
    rng = draw(st.sampled_from(["generator", "randomstate", None, 42, "junk"]))
    rng = {"generator": np.random.default_rng(3), "randomstate": np.random.RandomState(3)}.get(rng, rng)

    def check(result):
        output, mask = result
        scale = 1 / (1 - probability)
        assert np.all((mask == 0) | np.isclose(mask, scale)), "mask values"
        _close(output, x.astype(np.float64) * mask, dtype)
    return Case(name, [_maybe_broken(draw, x), probability, rng], check=check)


# ----------------------------------------------------------------------------- joining branches

def _wild(draw):
    """Whether this case may hold junk (one case in two); the others hold valid arguments only, so that
    enough calls get as far as a result to check."""
    return draw(st.booleans())


def _mostly(draw, wild, valid, junk):
    """One of `valid`; in a wild case one of `junk` one time in three."""
    valid = st.sampled_from(list(valid))
    return draw(st.one_of(valid, valid, st.sampled_from(list(junk))) if wild else valid)


def _broken(draw, wild, array):
    """_maybe_broken(array) in a wild case, else the array itself."""
    return _maybe_broken(draw, array) if wild else array

def _add_case(draw, name):
    dtype = _dtype(draw)
    wild = _wild(draw)
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=0, max_size=4)))
    other_shape = _mostly(draw, wild, [shape], [shape + (1,), shape[:-1] + (5,)])
    x, other = _array(draw, shape, dtype), _array(draw, other_shape, dtype)
    expected = x.astype(np.float64) + other.astype(np.float64) if other_shape == shape else None
    args = [_broken(draw, wild, x), _broken(draw, wild, other)]

    def check(result):
        assert expected is not None, f"other of shape {other_shape} accepted for input of shape {shape}"
        if name == "add_":  # in place: the result is the first argument itself, holding the sum
            assert result is args[0], "add_ did not return its input"
        _close(result, expected, dtype)
    return Case(name, args, check=check)


def _cat_case(draw, name):
    dtype = _dtype(draw)
    ndim = draw(st.integers(1, 4))
    shape = [draw(st.integers(0, 3)) for _ in range(ndim)]
    wild = _wild(draw)
    dim = _mostly(draw, wild, range(-ndim, ndim), JUNK_HYPER)
    valid_dim = isinstance(dim, int) and not isinstance(dim, bool) and -ndim <= dim < ndim
    axis = dim % ndim if valid_dim else 1 % ndim
    if name == "cat_backward":
        sizes = [draw(st.integers(0, 3)) for _ in range(draw(st.integers(1, 4)))]
        shape[axis] = sum(sizes)
        grad_y = _array(draw, tuple(shape), dtype)
        sizes = _mostly(draw, wild, [sizes, tuple(sizes)], [sizes + [1], [-1] + sizes, [], [float(s) for s in sizes],
                                                            None, np.array(sizes)])

        def check(result):
            pieces = np.split(grad_y.astype(np.float64), np.cumsum(sizes)[:-1], axis=axis)
            assert len(result) == len(pieces), f"{len(result)} pieces, expected {len(pieces)}"
            for got, expected in zip(result, pieces):
                _close(got, expected, dtype)
        return Case(name, [_broken(draw, wild, grad_y), sizes], {"dim": dim}, check)
    inputs = []
    for _ in range(draw(st.integers(1, 4))):
        piece_shape = list(shape)
        piece_shape[axis] = draw(st.integers(0, 3))
        if wild and draw(st.integers(0, 3)) == 0:  # disagree along another axis (or in rank)
            piece_shape = piece_shape + [1] if ndim == 1 else [s + 1 for s in piece_shape]
        inputs.append(_array(draw, tuple(piece_shape), dtype))
    originals = list(inputs)
    inputs = _mostly(draw, wild, [list, tuple], [lambda pieces: pieces[0]])(
        [_broken(draw, wild, piece) for piece in inputs])
    if wild and draw(st.integers(0, 3)) == 0:
        inputs = draw(st.sampled_from([[], (), None, "x", [originals[0], None], [originals[0], originals[0].astype(
            np.float64 if dtype == np.float32 else np.float32)]]))

    def check(result):
        _close(result, np.concatenate([piece.astype(np.float64) for piece in originals], axis=axis), dtype)
    return Case(name, [inputs], {"dim": dim}, check)


# ----------------------------------------------------------------------------- normalization

def _scale_shift_case(draw, name):
    """scale_shift (per-channel scale and shift, residual, ReLU) and batch_norm_scale_shift."""
    dtype = _dtype(draw)
    wild = _wild(draw)
    C = _mostly(draw, wild, [1, 2, 3], [0])
    given = {}  # argument name -> (C,) array as drawn, when of the right length

    def channels(name, positive=False):
        """A (C,) array, or sometimes one of the wrong length, or None when optional."""
        length = _mostly(draw, wild, [C], [C + 1])
        values = _array(draw, (length,), dtype)
        values = (np.abs(values) + 0.1).astype(dtype) if positive else values
        if length == C:
            given[name] = values.astype(np.float64)
        return values

    if name == "batch_norm_scale_shift":
        mean, var = channels("mean"), channels("var", positive=True)
        kwargs = {key: draw(st.one_of(st.none(), st.just(channels(key)))) for key in ("weight", "bias")}
        kwargs["eps"] = _mostly(draw, wild, [1e-5, 1e-3, 0.5], [0, -1e-5, float("nan"), "a", None])

        def check(result):
            for key in ("mean", "var") + tuple(key for key in ("weight", "bias") if kwargs[key] is not None):
                assert key in given, f"{key} of the wrong length accepted for {C} channels"
            scale = 1 / np.sqrt(given["var"] + kwargs["eps"]) * (1.0 if kwargs["weight"] is None else given["weight"])
            _close(result[0], scale, dtype)
            _close(result[1], (0.0 if kwargs["bias"] is None else given["bias"]) - given["mean"] * scale, dtype)
        return Case(name, [_broken(draw, wild, mean), _broken(draw, wild, var)], kwargs, check)

    shape = (draw(st.integers(0, 3)), C) + tuple(draw(st.lists(st.integers(0, 3), min_size=0, max_size=2)))
    x = _array(draw, shape, dtype)
    scale = draw(st.one_of(st.none(), st.just(channels("scale"))))
    shift = draw(st.one_of(st.none(), st.just(channels("shift"))))
    residual_shape = _mostly(draw, wild, [shape], [shape + (1,), (shape[0] + 1,) + shape[1:]])
    residual = draw(st.one_of(st.none(), st.just(_array(draw, residual_shape, dtype))))
    activation = _mostly(draw, wild, [None, "relu", "relu6"], ["gelu", 1, "", "RELU"])
    in_place = draw(st.booleans())
    out = x if in_place else None
    x64 = x.astype(np.float64)  # before an in-place call overwrites x

    def check(result):
        for key, array in (("scale", scale), ("shift", shift)):
            assert array is None or key in given, f"{key} of the wrong length accepted for {C} channels"
        assert residual is None or residual_shape == shape, f"residual {residual_shape} accepted for {shape}"
        channel = (1, C) + (1,) * (len(shape) - 2)
        expected = x64 * (1.0 if scale is None else given["scale"].reshape(channel))
        expected = expected + (0.0 if shift is None else given["shift"].reshape(channel))
        expected = expected + (0.0 if residual is None else residual.astype(np.float64))
        if activation is not None:
            expected = np.maximum(expected, 0.0)
        if activation == "relu6":
            expected = np.minimum(expected, 6.0)
        if in_place:
            assert result is x, "scale_shift(out=input) did not return input"
        _close(result, expected, dtype)
    return Case(name, [_broken(draw, wild, x), scale, shift, residual, activation], {"out": out}, check)


def _batch_norm_case(draw, name):
    dtype = _dtype(draw)
    spatial = tuple(draw(st.lists(st.integers(0, 3), min_size=0, max_size=2)))
    wild = _wild(draw)
    N, C = draw(st.integers(0, 3)), _mostly(draw, wild, [1, 2, 3], [0])
    shape = (N, C) + spatial
    x = _array(draw, shape, dtype)

    def channels(positive=False):
        """A (C,) array, or sometimes one of the wrong length."""
        values = _array(draw, (_mostly(draw, wild, [C], [C + 1]),), dtype)
        return (np.abs(values) + 0.1).astype(dtype) if positive else values

    has_running = draw(st.sampled_from([True, True, True, False]))
    running_mean, running_var = (channels(), channels(positive=True)) if has_running else (None, None)
    if has_running and wild and draw(st.integers(0, 3)) == 0:  # a missing partner, or a strided view it cannot update
        running_var = draw(st.sampled_from([None, np.repeat(running_var, 2)[::2]]))
    weight = draw(st.one_of(st.none(), st.just(channels())))
    bias = draw(st.one_of(st.none(), st.just(channels())))
    training = draw(st.one_of(st.booleans(), st.sampled_from([0, 1, None])))
    eps = _mostly(draw, wild, [1e-5, 1e-5, 1e-3, 0.5, float("inf")], [0, -1e-5, float("nan"), "a", None])
    x64 = x.astype(np.float64)
    axes = (0,) + tuple(range(2, x.ndim))
    usable_eps = eps if isinstance(eps, float) else 1e-5

    def statistics():
        """The (C,) mean and invstd the call normalises with, in float64."""
        if training:
            mean, variance = x64.mean(axis=axes), x64.var(axis=axes)
        else:
            mean, variance = running_mean.astype(np.float64), running_var.astype(np.float64)
        return mean, 1 / np.sqrt(variance + usable_eps)

    if name in ("batch_norm", "batch_norm_relu"):
        momentum = _mostly(draw, wild, [0.1, 0.1, 0.0, 1.0, 0.5], [-0.1, 1.5, float("nan"), "a", None])
        return_stats = draw(st.booleans())
        saved = [None if a is None else a.copy() for a in (running_mean, running_var)]
        kwargs = dict(weight=weight, bias=bias, training=training, momentum=momentum, eps=eps,
                      return_stats=return_stats)
        residual = None
        if name == "batch_norm_relu":  # relu(batch_norm(x) + residual)
            residual = draw(st.one_of(st.none(), st.just(_array(draw, _mostly(draw, wild, [shape], [shape + (1,)]),
                                                                    dtype))))
            kwargs["residual"] = _broken(draw, wild, residual) if residual is not None else None

        def check(result):
            given_mean, given_var = saved if has_running else (np.zeros(C), np.ones(C))
            expected, new_mean, new_var = reference.batch_norm(
                x, given_mean.astype(np.float64), given_var.astype(np.float64), weight, bias, bool(training),
                momentum, eps)
            if name == "batch_norm_relu":
                expected = np.maximum(expected + (0 if residual is None else residual), 0)
            if return_stats:
                result, (mean, invstd) = result
                expected_mean, expected_invstd = statistics()
                _close(mean, expected_mean, dtype)
                _close(invstd, expected_invstd, dtype)
            _close(result, expected, dtype)
            if has_running:  # updated in place when training, untouched otherwise
                _close(running_mean, new_mean if training else saved[0], dtype)
                _close(running_var, new_var if training else saved[1], dtype)
        return Case(name, [_broken(draw, wild, x), running_mean, running_var], kwargs, check)

    grad_y = _array(draw, _mostly(draw, wild, [shape], [shape + (1,)]), dtype)
    stats = None
    if draw(st.integers(0, 2)) == 0:
        try:
            mean, invstd = (value.astype(dtype) for value in statistics())
            stats = _mostly(draw, wild, [(mean, invstd), [mean, invstd]],
                            [(mean,), "a", (mean, invstd.astype(np.float16)), (mean[:-1], invstd[:-1])])
        except (AttributeError, ValueError, ZeroDivisionError):  # no running statistics, or none to take
            stats = draw(st.sampled_from([(np.zeros(C, dtype), np.ones(C, dtype)), "a"]))
    need_input_grad = draw(st.booleans())
    kwargs = dict(weight=weight, bias=bias, training=training, eps=eps, stats=stats,
                  need_input_grad=need_input_grad)

    gate = _array(draw, _mostly(draw, wild, [shape], [shape[:-1]]), dtype)  # the fused forward's output

    def check(result):
        if stats is not None:
            mean, invstd = stats
        else:
            mean, invstd = statistics()
        passed = grad_y * (gate > 0) if name == "batch_norm_relu_backward" else grad_y
        expected = reference.batch_norm_backward(passed, x, mean, invstd, weight, bool(training))
        if need_input_grad:
            _close(result[0], expected[0], dtype)
        else:
            assert result[0] is None, "grad_input computed with need_input_grad=False"
        for got, wanted, given in ((result[1], expected[1], weight), (result[2], expected[2], bias)):
            if given is None:
                assert got is None, "a gradient for an absent weight or bias"
            else:
                _close(got, wanted, dtype)
    arrays = [_broken(draw, wild, grad_y), _broken(draw, wild, x), running_mean, running_var]
    if name == "batch_norm_relu_backward":
        arrays.insert(1, _broken(draw, wild, gate))
    return Case(name, arrays, kwargs, check)


def _lrn_case(draw, name):
    dtype = _dtype(draw)
    wild = _wild(draw)
    shape = (draw(st.integers(0, 2)), draw(st.integers(0, 5))) + tuple(
        draw(st.lists(st.integers(0, 3), min_size=1, max_size=3)))
    x = _array(draw, shape, dtype)
    size = _mostly(draw, wild, range(1, 8), JUNK_HYPER)
    hyper = dict(alpha=_mostly(draw, wild, [1e-4, 0.5, 1.0, 2.0, 0], [float("nan"), "a", None]),
                 beta=_mostly(draw, wild, [0.75, 0.5, 1.0, 2.0, 0, -0.5], ["a", None, 1j]),
                 k=_mostly(draw, wild, [1.0, 2.0, 0.5, 1], ["a", None, np.float32(1)[None]]))
    if name.endswith("_backward"):
        grad_y = _array(draw, _mostly(draw, wild, [shape], [shape[:-1] + (5,)]), dtype)
        return Case(name, [_broken(draw, wild, grad_y), _broken(draw, wild, x), size], hyper, lambda result: _close(
            result, reference.local_response_norm_backward(grad_y, x, size, **hyper), dtype))
    return Case(name, [_broken(draw, wild, x), size], hyper, lambda result: _close(
        result, reference.local_response_norm(x, size, **hyper), dtype))


# ----------------------------------------------------------------------------- adaptive pooling

def _adaptive_output_size(shape, output_size):
    """(OH, OW) of an output_size the call accepted: an int, or a pair where None keeps that input size."""
    if isinstance(output_size, (tuple, list)):
        return tuple(shape[2 + axis] if value is None else value for axis, value in enumerate(output_size))
    return (output_size, output_size)


def _adaptive_case(draw, name):
    dtype = _dtype(draw)
    mode = "max" if name.startswith("adaptive_max") else "avg"
    N = draw(st.integers(0, 2))
    wild = _wild(draw)
    plane = st.integers(0 if wild else 1, 6)
    shape = (N, draw(st.integers(0, 3)), draw(plane), draw(plane))
    x = _array(draw, shape, dtype)
    valid = st.integers(1, 7)
    output_size = draw(st.one_of(valid, st.tuples(valid, valid), st.tuples(st.none(), valid),
                                 st.tuples(valid, st.none()), *([st.sampled_from(JUNK_HYPER)] if wild else [])))
    unbatched = N == 1 and draw(st.integers(0, 3)) == 0
    given_x = x[0] if unbatched else x

    def as_given(array4):
        return array4[0] if unbatched else array4

    forward = F.adaptive_max_pool2d if mode == "max" else F.adaptive_avg_pool2d
    if name.endswith("_backward"):
        try:
            grad_y = _array(draw, tuple(np.shape(forward(given_x, output_size))), dtype)
        except CLEAN:
            grad_y = _array(draw, (1, 1, 1), dtype)
        kwargs = {}
        if mode == "max" and draw(st.booleans()):
            try:
                indices = F.adaptive_max_pool2d(given_x, output_size, return_indices=True)[1]
            except CLEAN:
                indices = np.zeros((1, 1, 1, 1), np.int64)
            kwargs["indices"] = _mostly(draw, wild, [indices], [indices + 10 ** 6, -indices - 1,
                                                                indices.astype(np.int32), indices.astype(np.float32),
                                                                indices.tolist(), 1.5, "a"])

        def check(result):
            g4 = grad_y.reshape((N,) + grad_y.shape[-3:])
            expected = reference.adaptive_pool2d_backward(g4, x, mode) if x.size else np.zeros(shape)
            _close(result, as_given(expected), dtype)
        return Case(name, [_broken(draw, wild, grad_y), _broken(draw, wild, given_x), output_size], kwargs, check)

    kwargs = {"return_indices": draw(st.booleans())} if mode == "max" else {}

    def check(result):
        out_size = _adaptive_output_size(shape, output_size)
        if N * shape[1] == 0:  # nothing to pool: an empty result of the right shape (any output size)
            for array in (result if kwargs.get("return_indices") else (result,)):
                assert array.size == 0 and tuple(array.shape[-2:]) == tuple(out_size), f"shape {array.shape}"
            return
        expected, expected_indices = reference.adaptive_pool2d(x, out_size, mode)
        if kwargs.get("return_indices"):
            result, indices = result
            assert np.asarray(indices).dtype == np.int64, f"indices of dtype {np.asarray(indices).dtype}"
            np.testing.assert_array_equal(indices, as_given(expected_indices))
        _close(result, as_given(expected), dtype)
    return Case(name, [_broken(draw, wild, given_x), output_size], kwargs, check)


def _builder(name):
    if name.startswith("conv"):
        return _conv_case
    if name.startswith(("max_pool2d", "avg_pool2d")):
        return _pool_case
    if name.startswith("global_avg_pool2d"):
        return _global_pool_case
    if name.replace("_backward", "") in ACTIVATIONS:
        return _activation_case
    if name.startswith("linear_relu"):
        return _linear_relu_case
    if name.startswith("linear"):
        return _linear_case
    if name.startswith("local_conv2d"):
        return _local_case
    if name == "softmax_cross_entropy":
        return _loss_case
    if name.startswith("dropout"):
        return _dropout_case
    if name in ("add", "add_"):
        return _add_case
    if name.startswith("cat"):
        return _cat_case
    if name in ("scale_shift", "batch_norm_scale_shift"):
        return _scale_shift_case
    if name.startswith("batch_norm"):
        return _batch_norm_case
    if name.startswith("local_response_norm"):
        return _lrn_case
    if name.startswith("adaptive_"):
        return _adaptive_case
    return None


def _junk_case(draw, name):
    """A function this module has no builder for: every required argument junk; it must fail cleanly."""
    required = [p for p in inspect.signature(getattr(F, name)).parameters.values()
                if p.default is inspect.Parameter.empty and p.kind is p.POSITIONAL_OR_KEYWORD]
    return Case(name, [draw(st.sampled_from(JUNK_ARRAYS + JUNK_HYPER)) for _ in required])


def covered():
    """(names with a builder, names only junk-tested) of nbconv.functional.__all__."""
    names = sorted(F.__all__)
    return [n for n in names if _builder(n)], [n for n in names if not _builder(n)]


def run_case(case):
    """Call the case; a clean error or a result equal to the reference passes, anything else raises."""
    print(json.dumps({"case": case.describe(), "reference": case.check is not None and not _mutated}), flush=True)
    try:
        with np.errstate(all="ignore"):
            result = getattr(F, case.name)(*case.args, **case.kwargs)
    except CLEAN as error:
        assert str(error), f"{case.describe()}: {type(error).__name__} without a message"
        return "clean error"
    except Exception as error:  # noqa: BLE001 - any other exception is the failure being looked for
        raise AssertionError(f"{case.describe()} raised {type(error).__name__}: {error}") from error
    if case.check is None or _mutated:
        return "result (no reference)"
    try:
        case.check(result)
    except Exception as error:  # noqa: BLE001
        raise AssertionError(f"{case.describe()} returned a wrong result: {error}") from error
    return "checked against the reference"


def main(start_seed, examples):
    outcomes = {}

    @seed(start_seed)
    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def explore(data):
        name = data.draw(st.sampled_from(sorted(F.__all__)), label="function")
        _mutated.clear()
        case = (_builder(name) or _junk_case)(data.draw, name)
        outcome = run_case(case)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    explore()
    print(json.dumps({"outcomes": outcomes}), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
