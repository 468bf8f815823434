"""Adaptive pooling layers: any (N, C, H, W) input to a fixed (N, C, OH, OW), with PyTorch's windows."""
from .. import checks
from .. import functional as F
from .module import Layer


class _AdaptivePool2d(Layer):
    token = None

    def __init__(self, output_size):
        super().__init__()
        self.output_size = checks.pair("output_size", output_size, 1)

    def spec(self):
        height, width = self.output_size
        return f"{self.token}{height}" + ("" if width == height else f"x{width}")


class AdaptiveAvgPool2d(_AdaptivePool2d):
    """Average pooling to output_size (int or (OH, OW)) whatever the input's plane (torch.nn.AdaptiveAvgPool2d).
    Spec token: `adaptiveavgpool<H>[x<W>]`, e.g. `adaptiveavgpool1`, `adaptiveavgpool6`, `adaptiveavgpool7x5`."""

    token = "adaptiveavgpool"

    def forward(self, input):
        self.input = input
        return F.adaptive_avg_pool2d(input, self.output_size)

    def backward(self, grad_output):
        return F.adaptive_avg_pool2d_backward(grad_output, self.input, self.output_size)


class AdaptiveMaxPool2d(_AdaptivePool2d):
    """Max pooling to output_size (int or (OH, OW)) whatever the input's plane (torch.nn.AdaptiveMaxPool2d).
    Spec token: `adaptivemaxpool<H>[x<W>]`."""

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
