"""Layers with forward and backward passes over nbconv's kernels."""
from .layers import (AvgPool2d, Conv1d, Conv2d, Dropout, Flatten, GlobalAvgPool2d, LeakyReLU, Linear,  # noqa: F401
                     LocallyConnected2d, MaxPool2d, ReLU, ReLU6, Sigmoid, Tanh)
from .adaptive_pool import AdaptiveAvgPool2d, AdaptiveMaxPool2d  # noqa: F401
from .norm import BatchNorm1d, BatchNorm2d, LocalResponseNorm  # noqa: F401
from .module import Layer, Parameter, Sequential, WeightedLayer, ShapeMismatch, input_gradients_only, prefix_model  # noqa: F401
from .graph import Concat, Residual  # noqa: F401
from .inference import infer  # noqa: F401
