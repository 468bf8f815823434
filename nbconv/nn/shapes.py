"""Output shapes and multiply-add counts of layers, worked out from their hyper-parameters without running
them (so that a model can be checked against its input, and its memory counted, before anything big is
allocated). Shapes leave out the batch axis: (C, H, W) for images, (C, W) for sequences, (F,) for features.
"""
import numpy as np

from .. import functional as F


def _need(shape, ndim, layout):
    if len(shape) != ndim:
        raise ValueError(f"needs input of layout {layout}, got shape {shape}")


def _conv2d(layer, shape):
    _need(shape, 3, "(C, H, W)")
    geometry = F.conv_geometry((1,) + shape, layer.weight.shape, **layer.hyper)
    return geometry.output_shape[1:]


def _conv1d(layer, shape):
    _need(shape, 2, "(C, W)")
    h = layer.hyper
    padding = h["padding"] if isinstance(h["padding"], str) else (0, h["padding"])
    D, Cg, K = layer.weight.shape
    geometry = F.conv_geometry((1, shape[0], 1, shape[1]), (D, Cg, 1, K), (1, h["stride"]), padding,
                               (1, h["dilation"]), h["groups"])
    return (D, geometry.output_shape[3])


def _local(layer, shape):
    _need(shape, 3, "(C, H, W)")
    OH, OW, D, C, KH, KW = layer.weight.shape
    if shape[0] != C or tuple(shape[1:]) != tuple(layer.input_size):
        raise ValueError(f"was built for input of shape {(C,) + tuple(layer.input_size)}")
    return (D, OH, OW)


def _linear(layer, shape):
    if len(shape) != 1 or shape[0] != layer.weight.shape[1]:
        raise ValueError(f"needs input of shape ({layer.weight.shape[1]},) (features), got {shape}")
    return (layer.weight.shape[0],)


def _pool(layer, shape):
    _need(shape, 3, "(C, H, W)")
    h = layer.hyper
    return F.pool_geometry((1,) + shape, h["kernel_size"], h["stride"], h["padding"], h["ceil_mode"]).output_shape[1:]


def _global_pool(layer, shape):
    _need(shape, 3, "(C, H, W)")
    return (shape[0], 1, 1)


def _adaptive_pool(layer, shape):
    _need(shape, 3, "(C, H, W)")
    size = layer.output_size
    size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    return (shape[0],) + tuple(shape[1 + axis] if size[axis] is None else int(size[axis]) for axis in range(2))


def _flatten(layer, shape):
    return (int(np.prod(shape)),)


def _same(layer, shape):
    return tuple(shape)


def _batch_norm(layer, shape):
    if len(shape) + 1 not in layer.layouts or shape[0] != layer.num_features:
        wanted = " or ".join(layer.layouts.values())
        raise ValueError(f"needs input of layout {wanted} with {layer.num_features} channels, got shape {shape} "
                         "(without the batch axis)")
    return tuple(shape)


_RULES = {"Conv2d": _conv2d, "Conv1d": _conv1d, "LocallyConnected2d": _local, "Linear": _linear,
          "MaxPool2d": _pool, "AvgPool2d": _pool, "GlobalAvgPool2d": _global_pool,
          "AdaptiveAvgPool2d": _adaptive_pool, "AdaptiveMaxPool2d": _adaptive_pool, "Flatten": _flatten,
          "ReLU": _same, "ReLU6": _same, "Tanh": _same, "Sigmoid": _same, "LeakyReLU": _same, "Dropout": _same,
          "LocalResponseNorm": _same, "BatchNorm2d": _batch_norm, "BatchNorm1d": _batch_norm}


def output_shape(layer, shape):
    """The output shape of `layer` for input `shape`. Layers without a rule here run once on zeros of that
    shape (batch 1, eval mode)."""
    rule = _RULES.get(type(layer).__name__)
    if rule is not None:
        return tuple(int(size) for size in rule(layer, tuple(shape)))
    dtype = layer.parameters()[0].value.dtype if layer.parameters() else np.float32
    mode = layer.training
    layer.train(False)
    try:
        return tuple(layer.forward(np.zeros((1,) + tuple(shape), dtype)).shape[1:])
    finally:
        layer.train(mode)


def multiply_adds(layer, input_shape, output_shape):
    """Multiply-adds of one sample through a convolution, locally connected or fully connected layer (0 for
    the others: pooling, normalisation and element-wise work is not counted)."""
    kind = type(layer).__name__
    if kind in ("Conv2d", "Conv1d", "LocallyConnected2d"):
        per_output = int(np.prod(layer.weight.shape[-3:] if kind == "LocallyConnected2d" else layer.weight.shape[1:]))
        return int(np.prod(output_shape)) * per_output
    if kind == "Linear":
        return int(np.prod(layer.weight.shape))
    return 0
