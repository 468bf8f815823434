"""ONNX in and out: `save(model, path, input_shape)` writes any nbconv model as a standard ONNX graph
(opset 17); `load(path)` turns a convolutional network stored as ONNX into an ordinary nbconv model.

Both need the `onnx` extra (`pip install "nbconv[onnx]"`: onnx, and onnxruntime for the checks).
"""
from .export import OPSET, PREPROCESSING_KEYS, save, to_onnx  # noqa: F401
from .load import UnsupportedModel, load, to_model  # noqa: F401
