"""A model's layers with their output shapes, parameter counts and multiply-adds, worked out from the
layers' hyper-parameters (nothing runs, so even the largest network is summarised at once)."""
from dataclasses import dataclass

import numpy as np

from .nn.shapes import multiply_adds


@dataclass
class Row:
    """One layer: its dotted name, its spec token ('+' rows are residual sums, 'cat' rows concatenations),
    its output shape (one sample), its own parameters and multiply-adds (one sample)."""
    name: str
    kind: str
    output_shape: tuple
    parameters: int
    multiply_adds: int


def rows(model, input_shape):
    """The layers of `model` in the order they run, for one input of input_shape (C, H, W)."""
    found = []

    def visit(path, layer, before, after):
        kind = type(layer).__name__
        if layer.children() and kind not in ("Residual", "Concat"):
            return  # a plain sequence: its layers have rows of their own
        if kind == "Residual":
            token, parameters, work = "+ (residual sum)", 0, 0
        elif kind == "Concat":
            token, parameters, work = f"cat ({len(layer.children())} branches)", 0, 0
        else:
            token = layer.spec()
            parameters = sum(parameter.value.size for parameter in layer.parameters())
            work = multiply_adds(layer, before, after)
        found.append(Row(path, token, tuple(after), int(parameters), int(work)))

    model.trace(tuple(input_shape), visit)
    return found


def totals(model, found):
    """(trainable parameters, buffer values, multiply-adds per sample)."""
    buffers = sum(int(np.size(buffer)) for buffer in model.named_buffers().values())
    return sum(parameter.value.size for parameter in model.parameters()), buffers, sum(row.multiply_adds
                                                                                        for row in found)


def format_table(model, input_shape):
    """The summary as text lines: a header, one line per layer, the totals."""
    found = rows(model, input_shape)
    shape = lambda dims: "x".join(str(size) for size in dims)  # noqa: E731
    name_width = max([len("layer")] + [len(row.name) for row in found])
    kind_width = max([len("type")] + [len(row.kind) for row in found])
    lines = [f"{'layer':<{name_width}}  {'type':<{kind_width}}  {'output':>14}  {'parameters':>12}  "
             f"{'multiply-adds':>15}"]
    for row in found:
        lines.append(f"{row.name:<{name_width}}  {row.kind:<{kind_width}}  {shape(row.output_shape):>14}  "
                     f"{row.parameters:>12,}  {row.multiply_adds:>15,}")
    parameters, buffers, work = totals(model, found)
    lines.append(f"total: {parameters:,} trainable parameters ({buffers:,} buffer values), {work:,} multiply-adds "
                 f"per {shape(input_shape)} input ({work / 1e9:.2f} G)")
    return lines
