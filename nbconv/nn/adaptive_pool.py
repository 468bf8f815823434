"""Adaptive pooling layers: any (N, C, H, W) input to a fixed (N, C, OH, OW), with PyTorch's windows."""
from .. import checks
from .. import functional as F
from .module import Layer


class _AdaptivePool2d(Layer):
    token = None

    def __init__(self, output_size):
        super().__init__()
        self.output_size = _output_size(output_size)

    def spec(self):
        height, width = ("none" if size is None else size for size in self.output_size)
        return f"{self.token}{height}" + ("" if width == height else f"x{width}")

    def output_plane(self, plane):
        """(OH, OW) for an input plane (H, W): output_size, None keeping that input size."""
        return tuple(size if size is not None else extent for size, extent in zip(self.output_size, plane))


def _output_size(value):
    """What F.adaptive_avg_pool2d takes as output_size, as the pair (OH, OW): from an int, or a pair of ints >= 1
    or None (that axis keeps the input's size, as in PyTorch)."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return tuple(None if size is None else checks.integer("output_size", size, 1) for size in value)
    return checks.pair("output_size", value, 1)


class AdaptiveAvgPool2d(_AdaptivePool2d):
    """Average pooling to output_size (int or (OH, OW), None in the pair keeping that input size) whatever the
    input's plane (torch.nn.AdaptiveAvgPool2d). Spec token: `adaptiveavgpool<H>[x<W>]`, each size a number or
    `none`, e.g. `adaptiveavgpool1`, `adaptiveavgpool6`, `adaptiveavgpool7x5`, `adaptiveavgpoolnonex3`."""

    token = "adaptiveavgpool"

    def forward(self, input):
        self.input = input
        return F.adaptive_avg_pool2d(input, self.output_size)

    def backward(self, grad_output):
        return F.adaptive_avg_pool2d_backward(grad_output, self.input, self.output_size)


class AdaptiveMaxPool2d(_AdaptivePool2d):
    """Max pooling to output_size (int or (OH, OW), None in the pair keeping that input size) whatever the
    input's plane (torch.nn.AdaptiveMaxPool2d). Spec token: `adaptivemaxpool<H>[x<W>]`, as for averages."""

    token = "adaptivemaxpool"

    def forward(self, input):
        self.input = input
        if not self.training:  # positions are only needed for a backward pass (which recomputes them without)
            self.indices = None
            return F.adaptive_max_pool2d(input, self.output_size)
        output, self.indices = F.adaptive_max_pool2d(input, self.output_size, return_indices=True)
        return output

    def backward(self, grad_output):
        return F.adaptive_max_pool2d_backward(grad_output, self.input, self.output_size, self.indices,
                                              check_indices=False)  # made by its own forward
