"""Normalization layers: batch normalization over channels (BatchNorm1d, BatchNorm2d) and local response
normalization across channels (LocalResponseNorm)."""
import numpy as np

from .. import backend, checks
from ..spec_grammar import number
from .. import functional as F
from .layers import ReLU
from .module import Layer, Parameter


class _BatchNorm(Layer):
    """Batch normalization over axis 1 (see BatchNorm2d); subclasses fix the input layouts and the spec token."""

    token = None
    layouts = {}  # ndim -> layout description

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, dtype=np.float32):
        super().__init__()
        self.num_features = checks.integer("num_features", num_features, 1)
        self.eps = checks.real("eps", eps)
        if not self.eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        if momentum is not None:
            momentum = checks.real("momentum", momentum)
            if not 0.0 <= momentum <= 1.0:
                raise ValueError(f"momentum must lie in [0, 1] or be None, got {momentum}")
        self.momentum = momentum
        self.affine = bool(affine)
        self.weight = Parameter(np.ones(num_features, dtype)) if self.affine else None
        self.bias = Parameter(np.zeros(num_features, dtype)) if self.affine else None
        self.running_mean = np.zeros(num_features, dtype)
        self.running_var = np.ones(num_features, dtype)
        self.num_batches_tracked = np.zeros((), np.int64)
        self.input = self.stats = None

    def named_parameters(self):
        return {"weight": self.weight, "bias": self.bias} if self.affine else {}

    def named_buffers(self):
        """{'running_mean': (C,), 'running_var': (C,), 'num_batches_tracked': int64 array of shape ()}: the
        state that is not trained by gradients (torchvision's names). The counter stays a host array."""
        return {"running_mean": self.running_mean, "running_var": self.running_var,
                "num_batches_tracked": self.num_batches_tracked}

    def to(self, device):
        super().to(device)
        self.running_mean = backend.transfer(self.running_mean, device)
        self.running_var = backend.transfer(self.running_var, device)
        return self

    def _check_input(self, input):
        if input.ndim not in self.layouts:
            wanted = " or ".join(self.layouts.values())
            raise ValueError(f"{type(self).__name__} input must have layout {wanted}, got shape {tuple(input.shape)}")
        if input.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}) input must have {self.num_features} "
                             f"channels on axis 1, got shape {tuple(input.shape)}")

    def forward(self, input):
        self._check_input(input)
        self.forward_training = self.training
        momentum = self.momentum
        if self.training and momentum is None:  # a cumulative average over the batches seen (PyTorch's rule)
            momentum = 1.0 / float(self.num_batches_tracked + 1)
        output, self.stats = F.batch_norm(
            input, self.running_mean, self.running_var, None if self.weight is None else self.weight.value,
            None if self.bias is None else self.bias.value, training=self.training,
            momentum=0.0 if momentum is None else momentum, eps=self.eps, return_stats=True)
        if self.training:
            self.num_batches_tracked[...] += 1
        self.input = input
        return output

    def backward(self, grad_output, need_input_grad=True):
        grad_input, grad_weight, grad_bias = F.batch_norm_backward(
            grad_output, self.input, self.running_mean, self.running_var,
            None if self.weight is None else self.weight.value, None if self.bias is None else self.bias.value,
            training=self.forward_training, eps=self.eps, stats=self.stats, need_input_grad=need_input_grad)
        if self.affine:
            self.weight.grad, self.bias.grad = grad_weight, grad_bias
        return grad_input

    def fuses_with(self, following, input):
        # normalise and rectify in one pass (one call for both backward): a ResNet's conv, bn, relu
        return type(following) is ReLU

    def forward_fused(self, input, residual=None):
        """relu(self.forward(input) + residual) in one pass (residual None: relu(self.forward(input))); keeps
        the output for backward_fused."""
        self._check_input(input)
        self.forward_training = self.training
        momentum = self.momentum
        if self.training and momentum is None:
            momentum = 1.0 / float(self.num_batches_tracked + 1)
        output, self.stats = F.batch_norm_relu(
            input, self.running_mean, self.running_var, None if self.weight is None else self.weight.value,
            None if self.bias is None else self.bias.value, training=self.training,
            momentum=0.0 if momentum is None else momentum, eps=self.eps, residual=residual, return_stats=True)
        if self.training:
            self.num_batches_tracked[...] += 1
        self.input, self.output = input, output
        return output

    def backward_fused(self, grad_output, need_input_grad=True):
        """The input gradient of relu(self.forward(input)) from the ReLU's output gradient; sets the
        parameters' gradients."""
        grad_input, grad_weight, grad_bias = F.batch_norm_relu_backward(
            grad_output, self.output, self.input, self.running_mean, self.running_var,
            None if self.weight is None else self.weight.value, None if self.bias is None else self.bias.value,
            training=self.forward_training, eps=self.eps, stats=self.stats, need_input_grad=need_input_grad)
        if self.affine:
            self.weight.grad, self.bias.grad = grad_weight, grad_bias
        return grad_input

    def spec(self):
        return self.token + ("" if self.eps == 1e-5 else f"eps{number(self.eps)}") + (
            "" if self.momentum == 0.1 else f"momentum{'none' if self.momentum is None else number(self.momentum)}"
        ) + ("" if self.affine else "noaffine")


class BatchNorm2d(_BatchNorm):
    """Batch normalization of images (N, C, H, W) over N, H and W, per channel (torch.nn.BatchNorm2d).

    Training mode (train()) normalises with the batch's statistics and updates running_mean/running_var
    with `momentum` (None: a cumulative average), the variance unbiased; eval mode (eval()) uses them.
    Parameters weight (ones) and bias (zeros), (C,), when affine; buffers via named_buffers().
    Spec token: `bn[eps<E>][momentum<M>|momentumnone][noaffine]`, e.g. `bn`, `bneps0.001`, `bnnoaffine`.
    """

    token = "bn"
    layouts = {4: "(N, C, H, W)"}


class BatchNorm1d(_BatchNorm):
    """Batch normalization of features (N, C) or sequences (N, C, L), per channel (torch.nn.BatchNorm1d);
    the same rules, parameters and buffers as BatchNorm2d. Spec token: `bn1d` with BatchNorm2d's suffixes."""

    token = "bn1d"
    layouts = {2: "(N, C)", 3: "(N, C, L)"}


class LocalResponseNorm(Layer):
    """Local response normalization across channels (torch.nn.LocalResponseNorm; AlexNet used size=5,
    alpha=1e-4, beta=0.75, k=2): input (N, C, ...) of 3 or more axes, same shape out.

    Spec token: `lrn<size>[a<alpha>][b<beta>][k<k>]`, fields at their defaults (alpha 1e-4, beta 0.75, k 1)
    left out, e.g. `lrn5`, `lrn5k2` (AlexNet), `lrn3a0.001b0.5`.
    """

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        self.size = checks.integer("size", size, 1)
        # finite, as the spec a checkpoint stores can only say finite numbers
        self.alpha, self.beta, self.k = (checks.finite_real(name, value) for name, value in
                                         (("alpha", alpha), ("beta", beta), ("k", k)))

    def forward(self, input):
        self.input = input
        return F.local_response_norm(input, self.size, self.alpha, self.beta, self.k)

    def backward(self, grad_output):
        return F.local_response_norm_backward(grad_output, self.input, self.size, self.alpha, self.beta, self.k)

    def spec(self):
        return f"lrn{self.size}" + "".join(f"{letter}{number(value)}" for letter, value, default in (
            ("a", self.alpha, 1e-4), ("b", self.beta, 0.75), ("k", self.k, 1.0)) if value != default)
