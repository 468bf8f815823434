"""Calls of every public kernel name (nbconv.kernels.contracts.CONTRACTS) that fit its contract, shared by the
CPU and CUDA contract tests: BUILDERS[case] = (kernel name, builder(rng, dtype) -> {parameter: value} in the
kernel's order, arrays as numpy arrays). A case "name[absent]" passes the empty placeholders its contract
allows."""
import numpy as np

from nbconv.kernels.contracts import CONTRACTS

SENTINEL = -1234.5
MARGIN = 16  # sentinel elements before and after each array


def _flat(rng, dtype, L=11):
    return rng.standard_normal(L).astype(dtype)


def _rows(rng, dtype, shape=(3, 5, 7)):
    return rng.standard_normal(shape).astype(dtype)


def _activation(rng, dtype, backward, **scalars):
    arrays = {"grad_output": _flat(rng, dtype)} if backward else {}
    arrays.update(input=_flat(rng, dtype), **{"grad_input" if backward else "output": np.empty(11, dtype)})
    return {**arrays, **scalars}


def _batch_norm(rng, dtype, forward, relu=False, absent=False):
    C = 5
    channel = (lambda: np.empty(0, dtype)) if absent else (lambda: rng.uniform(0.5, 2, C).astype(dtype))
    if forward:
        arrays = {"input": _rows(rng, dtype), "weight": channel(), "bias": channel(), "running_mean": channel(),
                  "running_var": channel()}
        if relu:
            arrays["residual"] = np.empty((0, 0, 0), dtype) if absent else _rows(rng, dtype)
        return {**arrays, "output": np.empty((3, C, 7), dtype), "mean": np.empty(C, dtype),
                "invstd": np.empty(C, dtype), "momentum": 0.1, "eps": 1e-5, "training": 1}
    arrays = {"grad_output": _rows(rng, dtype)}
    if relu:
        arrays["output"] = _rows(rng, dtype)
    empty_channel = np.empty(0, dtype)
    return {**arrays, "input": _rows(rng, dtype), "weight": channel(), "mean": rng.standard_normal(C).astype(dtype),
            "invstd": rng.uniform(0.5, 2, C).astype(dtype),
            "grad_input": np.empty((0, 0, 0) if absent else (3, C, 7), dtype),
            "grad_weight": empty_channel if absent else np.empty(C, dtype),
            "grad_bias": empty_channel.copy() if absent else np.empty(C, dtype), "training": 1}


def _planes(rng, dtype, shape=(2, 3, 7, 9)):
    return rng.standard_normal(shape).astype(dtype)


# 3x3 windows at stride 1, padding 1: (7, 9) planes stay (7, 9)
POOL = dict(kernel_h=3, kernel_w=3, stride_h=1, stride_w=1, padding_h=1, padding_w=1)
LOCAL = dict(stride_h=1, stride_w=1, padding_h=1, padding_w=1)  # (3, 2) windows over (7, 9) give (7, 10)
# (3, 2) windows in 2 groups at padding 1: (5, 6) planes give (5, 7)
CONV = dict(stride_h=1, stride_w=1, padding_h=1, padding_w=1, dilation_h=1, dilation_w=1, groups=2)


def _segments():
    """Four segments of an 11-value buffer, one of them empty; segment_decay is float64 whatever the values'."""
    return {"segment_ends": np.array([3, 3, 8, 11], np.int64), "segment_decay": np.array([0.1, 0.0, 0.2, 0.0])}


BUILDERS = {  # case: (kernel, builder(rng, dtype) -> {parameter: value} in the kernel's order)
    "relu_forward": ("relu_forward", lambda r, t: _activation(r, t, False)),
    "relu_backward": ("relu_backward", lambda r, t: _activation(r, t, True)),
    "relu6_forward": ("relu6_forward", lambda r, t: _activation(r, t, False)),
    "relu6_backward": ("relu6_backward", lambda r, t: _activation(r, t, True)),
    "leaky_relu_forward": ("leaky_relu_forward", lambda r, t: _activation(r, t, False, negative_slope=0.1)),
    "leaky_relu_backward": ("leaky_relu_backward", lambda r, t: _activation(r, t, True, negative_slope=0.1)),
    "sigmoid_forward": ("sigmoid_forward", lambda r, t: _activation(r, t, False)),
    "sigmoid_backward": ("sigmoid_backward", lambda r, t: _activation(r, t, True)),
    "tanh_forward": ("tanh_forward", lambda r, t: _activation(r, t, False)),
    "tanh_backward": ("tanh_backward", lambda r, t: _activation(r, t, True)),
    "add_forward": ("add_forward", lambda r, t: {"input": _flat(r, t), "other": _flat(r, t),
                                                 "output": np.empty(11, t)}),
    "dropout_forward": ("dropout_forward", lambda r, t: {
        "input": _flat(r, t), "noise": r.uniform(0, 1, 11).astype(t), "output": np.empty(11, t),
        "mask": np.empty(11, t), "probability": 0.3}),
    "dropout_backward": ("dropout_backward", lambda r, t: {
        "grad_output": _flat(r, t), "mask": (r.uniform(0, 1, 11) > 0.3).astype(t), "grad_input": np.empty(11, t)}),
    "cat_forward": ("cat_forward", lambda r, t: {"input": _rows(r, t, (3, 4, 5)), "output": np.zeros((3, 11, 5), t),
                                                 "offset": 2}),
    "cat_backward": ("cat_backward", lambda r, t: {"grad_output": _rows(r, t, (3, 11, 5)),
                                                   "grad_input": np.empty((3, 4, 5), t), "offset": 2}),
    "batch_norm_stats": ("batch_norm_stats", lambda r, t: {
        "input": _rows(r, t), "running_mean": _flat(r, t, 5), "running_var": r.uniform(0.5, 2, 5).astype(t),
        "mean": np.empty(5, t), "invstd": np.empty(5, t), "momentum": 0.1, "eps": 1e-5, "training": 1}),
    "batch_norm_forward": ("batch_norm_forward", lambda r, t: _batch_norm(r, t, True)),
    "batch_norm_forward[absent]": ("batch_norm_forward", lambda r, t: _batch_norm(r, t, True, absent=True)),
    "batch_norm_backward": ("batch_norm_backward", lambda r, t: _batch_norm(r, t, False)),
    "batch_norm_backward[absent]": ("batch_norm_backward", lambda r, t: _batch_norm(r, t, False, absent=True)),
    "batch_norm_relu_forward": ("batch_norm_relu_forward", lambda r, t: _batch_norm(r, t, True, relu=True)),
    "batch_norm_relu_forward[absent]": ("batch_norm_relu_forward",
                                        lambda r, t: _batch_norm(r, t, True, relu=True, absent=True)),
    "batch_norm_relu_backward": ("batch_norm_relu_backward", lambda r, t: _batch_norm(r, t, False, relu=True)),
    "scale_shift_forward": ("scale_shift_forward", lambda r, t: {
        "input": _rows(r, t), "scale": _flat(r, t, 5), "shift": _flat(r, t, 5), "residual": _rows(r, t),
        "output": np.empty((3, 5, 7), t), "activation": 1}),
    "scale_shift_forward[absent]": ("scale_shift_forward", lambda r, t: {
        "input": _rows(r, t), "scale": np.empty(0, t), "shift": _flat(r, t, 5), "residual": np.empty((0, 0, 0), t),
        "output": np.empty((3, 5, 7), t), "activation": 2}),
    "local_response_norm_forward": ("local_response_norm_forward", lambda r, t: {
        "input": _rows(r, t), "output": np.empty((3, 5, 7), t), "size": 3, "alpha": 1e-2, "beta": 0.75, "k": 1.0}),
    "local_response_norm_backward": ("local_response_norm_backward", lambda r, t: {
        "grad_output": _rows(r, t), "input": _rows(r, t), "grad_input": np.empty((3, 5, 7), t), "size": 3,
        "alpha": 1e-2, "beta": 0.75, "k": 1.0}),
    "max_pool2d_backward": ("max_pool2d_backward", lambda r, t: {
        "grad_output": _planes(r, t), "indices": r.integers(0, 63, (2, 3, 7, 9)),
        "grad_input": np.empty((2, 3, 7, 9), t), **POOL}),
    "avg_pool2d_forward": ("avg_pool2d_forward", lambda r, t: {
        "input": _planes(r, t), "output": np.empty((2, 3, 7, 9), t),
        **POOL,
        "count_include_pad": 0}),
    "avg_pool2d_backward": ("avg_pool2d_backward", lambda r, t: {
        "grad_output": _planes(r, t), "grad_input": np.empty((2, 3, 7, 9), t),
        **POOL,
        "count_include_pad": 1}),
    "global_avg_pool2d_forward": ("global_avg_pool2d_forward", lambda r, t: {
        "input": _planes(r, t), "output": np.empty((2, 3, 1, 1), t)}),
    "global_avg_pool2d_backward": ("global_avg_pool2d_backward", lambda r, t: {
        "grad_output": _planes(r, t, (2, 3, 1, 1)), "grad_input": np.empty((2, 3, 7, 9), t)}),
    "adaptive_avg_pool2d_forward": ("adaptive_avg_pool2d_forward", lambda r, t: {
        "input": _planes(r, t), "output": np.empty((2, 3, 4, 5), t)}),
    "adaptive_avg_pool2d_backward": ("adaptive_avg_pool2d_backward", lambda r, t: {
        "grad_output": _planes(r, t, (2, 3, 4, 5)), "grad_input": np.empty((2, 3, 7, 9), t)}),
    "adaptive_max_pool2d_forward": ("adaptive_max_pool2d_forward", lambda r, t: {
        "input": _planes(r, t), "output": np.empty((2, 3, 4, 5), t), "indices": np.empty((2, 3, 4, 5), np.int64)}),
    "adaptive_max_pool2d_forward[absent]": ("adaptive_max_pool2d_forward", lambda r, t: {
        "input": _planes(r, t), "output": np.empty((2, 3, 4, 5), t), "indices": np.empty((0, 0, 0, 0), np.int64)}),
    "local_conv2d_forward": ("local_conv2d_forward", lambda r, t: {
        "input": _planes(r, t), "weight": _planes(r, t, (7, 10, 4, 3, 3, 2)), "bias": _planes(r, t, (4, 7, 10)),
        "output": np.empty((2, 4, 7, 10), t), **LOCAL}),
    "local_conv2d_forward[absent]": ("local_conv2d_forward", lambda r, t: {
        "input": _planes(r, t), "weight": _planes(r, t, (7, 10, 4, 3, 3, 2)), "bias": np.empty((0, 0, 0), t),
        "output": np.empty((2, 4, 7, 10), t), **LOCAL}),
    "local_conv2d_backward_input": ("local_conv2d_backward_input", lambda r, t: {
        "grad_output": _planes(r, t, (2, 4, 7, 10)), "weight": _planes(r, t, (7, 10, 4, 3, 3, 2)),
        "grad_input": np.empty((2, 3, 7, 9), t), **LOCAL}),
    "local_conv2d_backward_weight": ("local_conv2d_backward_weight", lambda r, t: {
        "grad_output": _planes(r, t, (2, 4, 7, 10)), "input": _planes(r, t),
        "grad_weight": np.empty((7, 10, 4, 3, 3, 2), t),
        **LOCAL}),
    "local_conv2d_backward_bias": ("local_conv2d_backward_bias", lambda r, t: {
        "grad_output": _planes(r, t, (2, 4, 7, 10)), "grad_bias": np.empty((4, 7, 10), t)}),
    "softmax_cross_entropy": ("softmax_cross_entropy", lambda r, t: {
        "logits": _rows(r, t, (5, 7)), "labels": r.integers(0, 7, 5), "losses": np.empty(5, t),
        "grad_logits": np.empty((5, 7), t)}),
    "sgd_update": ("sgd_update", lambda r, t: {
        "param": _flat(r, t), "grad": _flat(r, t), "velocity": _flat(r, t), "lr": 0.1, "momentum": 0.9,
        "weight_decay": 1e-3, "nesterov": 1}),
    "adam_update": ("adam_update", lambda r, t: {
        "param": _flat(r, t), "grad": _flat(r, t), "exp_avg": _flat(r, t), "exp_avg_sq": np.abs(_flat(r, t)),
        "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 1e-2, "step": 3}),
    "sgd_update_flat": ("sgd_update_flat", lambda r, t: {
        "param": _flat(r, t), "grad": _flat(r, t), "velocity": _flat(r, t), **_segments(), "lr": 0.1,
        "momentum": 0.9, "nesterov": 0}),
    "adam_update_flat": ("adam_update_flat", lambda r, t: {
        "param": _flat(r, t), "grad": _flat(r, t), "exp_avg": _flat(r, t), "exp_avg_sq": np.abs(_flat(r, t)),
        **_segments(), "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "step": 3}),
    # the kernels the CPU checks itself (contracts.SELF_CHECKED): their entries apply to the CUDA launchers
    "conv2d_forward": ("conv2d_forward", lambda r, t: {
        "input": _planes(r, t, (2, 4, 5, 6)), "weight": _planes(r, t, (6, 2, 3, 2)), "bias": _flat(r, t, 6),
        "output": np.empty((2, 6, 5, 7), t), **CONV}),
    "conv2d_backward_input": ("conv2d_backward_input", lambda r, t: {
        "grad_output": _planes(r, t, (2, 6, 5, 7)), "weight": _planes(r, t, (6, 2, 3, 2)),
        "grad_input": np.empty((2, 4, 5, 6), t), **CONV}),
    "conv2d_backward_weight": ("conv2d_backward_weight", lambda r, t: {
        "grad_output": _planes(r, t, (2, 6, 5, 7)), "input": _planes(r, t, (2, 4, 5, 6)),
        "grad_weight": np.empty((6, 2, 3, 2), t), **CONV}),
    "conv2d_backward_weight_bias": ("conv2d_backward_weight_bias", lambda r, t: {
        "grad_output": _planes(r, t, (2, 6, 5, 7)), "input": _planes(r, t, (2, 4, 5, 6)),
        "grad_weight": np.empty((6, 2, 3, 2), t), "grad_bias": np.empty(6, t), **CONV}),
    "conv2d_backward_bias": ("conv2d_backward_bias", lambda r, t: {
        "grad_output": _planes(r, t, (2, 6, 5, 7)), "grad_bias": np.empty(6, t)}),
    "linear_forward": ("linear_forward", lambda r, t: {
        "input": _rows(r, t, (3, 5)), "weight": _rows(r, t, (4, 5)), "bias": _flat(r, t, 4),
        "output": np.empty((3, 4), t)}),
    "linear_forward[absent]": ("linear_forward", lambda r, t: {
        "input": _rows(r, t, (3, 5)), "weight": _rows(r, t, (4, 5)), "bias": np.empty(0, t),
        "output": np.empty((3, 4), t)}),
    "linear_relu_forward": ("linear_relu_forward", lambda r, t: {
        "input": _rows(r, t, (3, 5)), "weight": _rows(r, t, (4, 5)), "bias": _flat(r, t, 4),
        "output": np.empty((3, 4), t)}),
    "linear_backward_input": ("linear_backward_input", lambda r, t: {
        "grad_output": _rows(r, t, (3, 4)), "weight": _rows(r, t, (4, 5)), "grad_input": np.empty((3, 5), t)}),
    "linear_relu_backward_input": ("linear_relu_backward_input", lambda r, t: {
        "grad_output": _rows(r, t, (3, 4)), "output": _rows(r, t, (3, 4)), "weight": _rows(r, t, (4, 5)),
        "grad_input": np.empty((3, 5), t)}),
    "linear_backward_weight": ("linear_backward_weight", lambda r, t: {
        "grad_output": _rows(r, t, (3, 4)), "input": _rows(r, t, (3, 5)), "grad_weight": np.empty((4, 5), t)}),
    "linear_backward_bias": ("linear_backward_bias", lambda r, t: {
        "grad_output": _rows(r, t, (3, 4)), "grad_bias": np.empty(4, t)}),
    "linear_backward_weight_bias": ("linear_backward_weight_bias", lambda r, t: {
        "grad_output": _rows(r, t, (3, 4)), "input": _rows(r, t, (3, 5)), "grad_weight": np.empty((4, 5), t),
        "grad_bias": np.empty(4, t)}),
    "linear_relu_backward_weight_bias": ("linear_relu_backward_weight_bias", lambda r, t: {
        "grad_output": _rows(r, t, (3, 4)), "output": _rows(r, t, (3, 4)), "input": _rows(r, t, (3, 5)),
        "grad_weight": np.empty((4, 5), t), "grad_bias": np.empty(4, t)}),
    "max_pool2d_forward": ("max_pool2d_forward", lambda r, t: {
        "input": _planes(r, t), "output": np.empty((2, 3, 7, 9), t), "indices": np.empty((2, 3, 7, 9), np.int64),
        **POOL}),
    "max_pool2d_forward[absent]": ("max_pool2d_forward", lambda r, t: {
        "input": _planes(r, t), "output": np.empty((2, 3, 7, 9), t), "indices": np.empty((0, 0, 0, 0), np.int64),
        **POOL}),
    "adaptive_max_pool2d_backward": ("adaptive_max_pool2d_backward", lambda r, t: {
        "grad_output": _planes(r, t, (2, 3, 4, 5)), "indices": r.integers(0, 63, (2, 3, 4, 5)),
        "grad_input": np.empty((2, 3, 7, 9), t)}),
}


def arguments(case, dtype=np.float64, seed=0):
    """(kernel name, {parameter: value}) of `case`."""
    name, build = BUILDERS[case]
    return name, build(np.random.default_rng(seed), dtype)


def constrained_axis(name, argument):
    """The last axis of `argument` whose size another argument (or a literal) fixes."""
    shapes = CONTRACTS[name].shapes
    shape = shapes[argument][0]
    for axis in reversed(range(len(shape))):
        dim = shape[axis]
        if isinstance(dim, int) or any(dim in other for key, (other, _) in shapes.items() if key != argument):
            return axis
    raise AssertionError(f"{name}: no axis of {argument} is fixed by another argument")


def one_short(array, axis):
    """A C-contiguous copy of `array` without its last element along `axis`."""
    return np.ascontiguousarray(np.take(array, range(array.shape[axis] - 1), axis=axis))
