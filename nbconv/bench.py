"""Benchmark cases for `nbconv bench` and benchmarks/: timing, FLOP counts, the machine's sgemm rate, and
the same work in PyTorch when it is importable (never a dependency)."""
import statistics
import time
from collections import namedtuple
from dataclasses import dataclass

import numpy as np

from . import backend
from . import functional as F

KERNELS = ("conv2d", "conv2d_forward", "conv2d_backward", "max_pool2d", "avg_pool2d", "relu", "linear")


@dataclass(frozen=True)
class ConvShape:
    """A convolution layer: input (n, c, h, w), d filters of k x k, stride s, padding p, groups g."""
    name: str
    n: int
    c: int
    h: int
    w: int
    d: int
    k: int
    s: int = 1
    p: int = 0
    g: int = 1

    @property
    def output_size(self):
        return ((self.h + 2 * self.p - self.k) // self.s + 1, (self.w + 2 * self.p - self.k) // self.s + 1)

    def forward_flops(self):
        oh, ow = self.output_size
        return 2.0 * self.n * self.d * oh * ow * (self.c // self.g) * self.k * self.k

    def describe(self):
        return f"{self.n}x{self.c}x{self.h}x{self.w} -> {self.d}, {self.k}x{self.k}, s{self.s} p{self.p} g{self.g}"


LAYER_SET = (
    ConvShape("lenet5-conv1", 64, 1, 28, 28, 6, 5, p=2),
    ConvShape("lenet5-conv2", 64, 6, 14, 14, 16, 5),
    ConvShape("alexnet-conv1", 8, 3, 227, 227, 96, 11, s=4),
    ConvShape("vgg-3x3", 8, 64, 56, 56, 64, 3, p=1),
    ConvShape("resnet-3x3", 16, 128, 28, 28, 128, 3, p=1),
    ConvShape("pointwise-1x1", 16, 256, 28, 28, 64, 1),
    ConvShape("depthwise-3x3", 16, 128, 56, 56, 128, 3, p=1, g=128),
)
PRESETS = ("layers", "lenet5", "medium", "batchnorm")


# what a benchmark shape may ask for: (least, most) per key, and the memory its arrays may take
SHAPE_BOUNDS = {"n": (1, 4096), "c": (1, 1 << 16), "h": (1, 8192), "w": (1, 8192), "d": (1, 1 << 16),
                "k": (1, 64), "s": (1, 64), "p": (0, 64), "g": (1, 1 << 16)}
MAX_CASE_BYTES = 4 << 30


def parse_shape(text, name="custom"):
    """'n=8,c=64,h=56,w=56,d=64,k=3,s=1,p=1,g=1' -> ConvShape (s, p, g optional), checked: every value within
    SHAPE_BOUNDS, the window within the padded image, groups dividing both channel counts, and the case's
    float32 arrays within MAX_CASE_BYTES. Raises ValueError naming the key."""
    values = {}
    for item in filter(None, text.replace(" ", "").split(",")):
        if "=" not in item:
            raise ValueError(f"--shape takes key=value pairs (n, c, h, w, d, k, s, p, g), got {item!r}")
        key, value = item.split("=", 1)
        if key not in SHAPE_BOUNDS:
            raise ValueError(f"--shape: unknown key {key!r}; use n, c, h, w, d, k, s, p, g")
        if key in values:  # 'k=3,k=5' was a typo timed as k=5 without a word
            raise ValueError(f"--shape: {key} is given twice in {text!r}")
        try:
            values[key] = int(value)
        except ValueError:
            raise ValueError(f"--shape: {key} must be an integer, got {value!r}") from None
        low, high = SHAPE_BOUNDS[key]
        if not low <= values[key] <= high:
            raise ValueError(f"--shape: {key} must lie in [{low}, {high}], got {values[key]}")
    missing = [key for key in "nchwdk" if key not in values]
    if missing:
        raise ValueError(f"--shape is missing {', '.join(missing)} (e.g. n=8,c=64,h=56,w=56,d=64,k=3,p=1)")
    shape = ConvShape(name, **values)
    if shape.k > min(shape.h, shape.w) + 2 * shape.p:
        raise ValueError(f"--shape: the {shape.k}x{shape.k} window (k) does not fit the {shape.h}x{shape.w} image "
                         f"padded by {shape.p} (p)")
    if shape.c % shape.g or shape.d % shape.g:
        raise ValueError(f"--shape: groups g={shape.g} must divide both c={shape.c} and d={shape.d}")
    oh, ow = shape.output_size
    elements = shape.n * shape.c * shape.h * shape.w + 2 * shape.n * shape.d * oh * ow + \
        shape.d * (shape.c // shape.g) * shape.k * shape.k
    if 4 * elements > MAX_CASE_BYTES:
        raise ValueError(f"--shape: the case's arrays would take {4 * elements / 2**30:.1f} GiB in float32, "
                         f"more than the {MAX_CASE_BYTES >> 30} GiB a benchmark case may use")
    return shape


SETTLE_SECONDS = 0.05  # lets another engine's OpenMP threads stop spinning before we time (they share the cores)


def time_call(function, repeat, warmup=2, synchronize=None):
    """Seconds per call: (median, min, max) over `repeat` timed calls after `warmup` untimed ones."""
    time.sleep(SETTLE_SECONDS)
    for _ in range(warmup):
        function()
    if synchronize:
        synchronize()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        if synchronize:
            synchronize()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), min(samples), max(samples)


class Comparison(namedtuple("Comparison", "median ratio low high ratio_low ratio_high")):
    """The other engine's seconds per call (median of its round medians, min and max over all its calls) and
    the speed ratio theirs/ours (median, min and max over the rounds' ratios of medians)."""


def compare_rounds(ours, theirs, repeat, rounds=5, synchronize=None):
    """Time `ours` and, when given, `theirs` (another engine's version) in alternating rounds of `repeat`
    calls, so that a drift in the machine's speed (20-40% over seconds on a shared VM) reaches both.

    Returns (median, min, max) seconds per call of ours (median of the round medians, extremes of all
    rounds) and, with theirs, a Comparison (its first two fields: their median, the median of the per-round
    ratios theirs/ours); else None."""
    ours_rounds, theirs_rounds = [], []
    for _ in range(rounds if theirs is not None else 1):
        ours_rounds.append(time_call(ours, repeat, synchronize=synchronize))
        if theirs is not None:
            theirs_rounds.append(time_call(theirs, repeat))
    timing = (statistics.median(r[0] for r in ours_rounds), min(r[1] for r in ours_rounds),
              max(r[2] for r in ours_rounds))
    if theirs is None:
        return timing, None
    ratios = [t[0] / o[0] for o, t in zip(ours_rounds, theirs_rounds)]
    return timing, Comparison(statistics.median(t[0] for t in theirs_rounds), statistics.median(ratios),
                              min(t[1] for t in theirs_rounds), max(t[2] for t in theirs_rounds),
                              min(ratios), max(ratios))


def comparison_fields(compared):
    """The result-dict fields of a Comparison: torch_ms (median), torch_min_ms, torch_max_ms, speed_vs_torch
    (median ratio) and its range over the rounds, speed_vs_torch_min/_max."""
    return {"torch_ms": compared.median * 1e3, "torch_min_ms": compared.low * 1e3,
            "torch_max_ms": compared.high * 1e3, "speed_vs_torch": compared.ratio,
            "speed_vs_torch_min": compared.ratio_low, "speed_vs_torch_max": compared.ratio_high}


def sgemm_rate(size=1024, repeat=5):
    """The machine's float32 matrix-product rate in GFLOP/s through numpy's BLAS (its default threads)."""
    a = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
    b = a.copy()
    median, _, _ = time_call(lambda: a @ b, repeat)
    return 2.0 * size ** 3 / median / 1e9


def torch_module():
    try:
        import torch
    except ImportError:
        return None
    import numba
    torch.set_num_threads(numba.get_num_threads())
    return torch


def _synchronize(device):
    if device != "cuda":
        return None
    from numba import cuda
    return cuda.synchronize


def conv_case(shape, kernel, device="cpu", dtype=np.float32, repeat=10, compare_torch=False):
    """Time conv2d forward, backward or both ('conv2d') on one shape; a result dict."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((shape.n, shape.c, shape.h, shape.w)).astype(dtype)
    w = (rng.standard_normal((shape.d, shape.c // shape.g, shape.k, shape.k)) * 0.1).astype(dtype)
    b = np.zeros(shape.d, dtype)
    oh, ow = shape.output_size
    grad_y = rng.standard_normal((shape.n, shape.d, oh, ow)).astype(dtype)
    x_d, w_d, b_d, g_d = (backend.transfer(a, device) for a in (x, w, b, grad_y))
    hyper = dict(stride=shape.s, padding=shape.p, groups=shape.g)

    def forward():
        F.conv2d(x_d, w_d, b_d, **hyper)

    def backward():
        F.conv2d_backward(g_d, x_d, w_d, **hyper)

    runs = {"conv2d_forward": (forward, 1), "conv2d_backward": (backward, 2),
            "conv2d": (lambda: (forward(), backward()), 3)}
    function, multiple = runs[kernel]
    torch = torch_module() if compare_torch and device == "cpu" else None
    torch_function = None
    if torch is not None:
        tx = torch.from_numpy(x).requires_grad_(kernel != "conv2d_forward")
        tw = torch.from_numpy(w).requires_grad_(kernel != "conv2d_forward")
        tb = torch.from_numpy(b).requires_grad_(kernel != "conv2d_forward")
        tg = torch.from_numpy(grad_y)
        conv = torch.nn.functional.conv2d

        def torch_forward():
            with torch.no_grad():
                conv(tx, tw, tb, stride=shape.s, padding=shape.p, groups=shape.g)

        def torch_both():
            conv(tx, tw, tb, stride=shape.s, padding=shape.p, groups=shape.g).backward(tg)

        y = conv(tx, tw, tb, stride=shape.s, padding=shape.p, groups=shape.g)

        def torch_backward():
            torch.autograd.grad(y, (tx, tw, tb), tg, retain_graph=True)

        torch_function = {"conv2d_forward": torch_forward, "conv2d_backward": torch_backward,
                          "conv2d": torch_both}[kernel]
    (median, low, high), theirs = compare_rounds(function, torch_function, repeat, synchronize=_synchronize(device))
    flops = shape.forward_flops() * multiple
    result = {"kernel": kernel, "case": shape.name, "shape": shape.describe(), "device": device,
              "dtype": np.dtype(dtype).name, "median_ms": median * 1e3, "min_ms": low * 1e3, "max_ms": high * 1e3,
              "gflops": flops / median / 1e9}
    if theirs is not None:
        result.update({**comparison_fields(theirs), "torch_gflops": flops / theirs.median / 1e9})
    return result


def simple_case(kernel, device="cpu", dtype=np.float32, repeat=20, n=64, c=16, size=28):
    """Time a pooling, activation or linear forward on a default shape."""
    rng = np.random.default_rng(0)
    if kernel == "linear":
        x = backend.transfer(rng.standard_normal((n, 400)).astype(dtype), device)
        w = backend.transfer(rng.standard_normal((120, 400)).astype(dtype), device)
        function, flops, described = (lambda: F.linear(x, w)), 2.0 * n * 400 * 120, f"{n}x400 -> 120"
    else:
        x = backend.transfer(rng.standard_normal((n, c, size, size)).astype(dtype), device)
        calls = {"max_pool2d": lambda: F.max_pool2d(x, 2), "avg_pool2d": lambda: F.avg_pool2d(x, 2),
                 "relu": lambda: F.relu(x)}
        function, flops, described = calls[kernel], float(n * c * size * size), f"{n}x{c}x{size}x{size}"
    median, low, high = time_call(function, repeat, synchronize=_synchronize(device))
    return {"kernel": kernel, "case": kernel, "shape": described, "device": device, "dtype": np.dtype(dtype).name,
            "median_ms": median * 1e3, "min_ms": low * 1e3, "max_ms": high * 1e3, "gflops": flops / median / 1e9}


MEDIUM_SPEC = "[[conv16k3p1,relu]*2,maxpool2]*2,[fc64,relu]*1,fc10"  # the lecture's pattern, n=2, m=2, k=1


def lenet5_cases(device="cpu", repeat=20, compare_torch=False):
    """LeNet-5 training step (batch 64, SGD with momentum) and inference (batch 256), in images/s."""
    return network_cases("lenet5", "lenet5", torch_lenet5, device, repeat, compare_torch)


def medium_cases(device="cpu", repeat=20, compare_torch=False):
    """A medium network (MEDIUM_SPEC: four 16-channel 3x3 convolutions): training step and inference."""
    return network_cases("medium", MEDIUM_SPEC, torch_medium, device, repeat, compare_torch)


def network_cases(name, spec, torch_builder, device="cpu", repeat=20, compare_torch=False):
    """A model's training step (batch 64, SGD with momentum) and inference (batch 256) on 1x28x28 inputs, in
    images/s. With compare_torch, nbconv and PyTorch (the same network from torch_builder) are timed in
    alternating rounds (compare_rounds)."""
    from . import models
    from .train import TrainConfig, make_optimizer
    rng = np.random.default_rng(0)
    model = models.build(spec, seed=0).to(device)
    optimizer = make_optimizer(TrainConfig(lr=0.01), model.parameters())
    x64 = backend.transfer(rng.standard_normal((64, 1, 28, 28)).astype(np.float32), device)
    labels = backend.transfer(rng.integers(0, 10, 64), device)
    x256 = backend.transfer(rng.standard_normal((256, 1, 28, 28)).astype(np.float32), device)

    def step():
        model.train()
        _, grad = F.softmax_cross_entropy(model.forward(x64), labels)
        model.backward(grad, need_input_grad=False)
        optimizer.step()

    def infer():
        model.eval()
        model.forward(x256)

    torch = torch_module() if compare_torch and device == "cpu" else None
    theirs = torch_network_functions(torch, torch_builder(torch)) if torch is not None else (None, None)
    results = []
    for case, function, torch_function, batch in ((f"{name}-train-step", step, theirs[0], 64),
                                                  (f"{name}-inference", infer, theirs[1], 256)):
        (median, low, high), compared = compare_rounds(function, torch_function, repeat,
                                                       synchronize=_synchronize(device))
        result = {"kernel": name, "case": case, "shape": f"batch {batch}", "device": device, "dtype": "float32",
                  "median_ms": median * 1e3, "min_ms": low * 1e3, "max_ms": high * 1e3, "images_per_s": batch / median}
        if compared is not None:
            result.update({**comparison_fields(compared), "torch_images_per_s": batch / compared.median})
        results.append(result)
    return results


def torch_lenet5(torch):
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                         nn.Linear(84, 10))


def torch_medium(torch):
    """MEDIUM_SPEC in PyTorch."""
    nn = torch.nn
    convs = [layer for c in (1, 16, 16, 16) for layer in (nn.Conv2d(c, 16, 3, padding=1), nn.ReLU())]
    return nn.Sequential(*convs[:4], nn.MaxPool2d(2), *convs[4:], nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(16 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10))


def torch_network_functions(torch, model):
    """PyTorch's training step (batch 64) and inference (batch 256) of `model`, as functions to time."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x64, labels = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    x256 = torch.randn(256, 1, 28, 28)
    loss_function = torch.nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad()
        loss_function(model(x64), labels).backward()
        optimizer.step()

    def infer():
        with torch.no_grad():
            model(x256)

    return step, infer


BATCH_NORM_SET = ((8, 64, 56, 56), (128, 16, 32, 32))  # a ResNet-18 stage-1 and a CIFAR ResNet block input


def batch_norm_case(shape, device="cpu", dtype=np.float32, repeat=10, compare_torch=False):
    """Time batch norm forward + backward in training mode (batch statistics, running updates, the full
    input gradient and the weight and bias gradients) on an (N, C, H, W) shape; with compare_torch,
    against torch.nn.functional.batch_norm + autograd in alternating rounds."""
    rng = np.random.default_rng(0)
    n, c, h, w = shape
    x = rng.standard_normal(shape).astype(dtype)
    grad_y = rng.standard_normal(shape).astype(dtype)
    running_mean, running_var = np.zeros(c, dtype), np.ones(c, dtype)
    weight, bias = np.ones(c, dtype), np.zeros(c, dtype)
    arrays = [backend.transfer(a, device) for a in (x, grad_y, running_mean, running_var, weight, bias)]
    x_d, g_d, mean_d, var_d, weight_d, bias_d = arrays

    def ours():
        _, stats = F.batch_norm(x_d, mean_d, var_d, weight_d, bias_d, training=True, return_stats=True)
        F.batch_norm_backward(g_d, x_d, mean_d, var_d, weight_d, bias_d, training=True, stats=stats)

    torch = torch_module() if compare_torch and device == "cpu" else None
    theirs = None
    if torch is not None:
        tx, tw, tb = (torch.from_numpy(a.copy()).requires_grad_() for a in (x, weight, bias))
        t_mean, t_var, tg = torch.from_numpy(running_mean.copy()), torch.from_numpy(running_var.copy()), \
            torch.from_numpy(grad_y)

        def theirs():
            y = torch.nn.functional.batch_norm(tx, t_mean, t_var, tw, tb, training=True)
            torch.autograd.grad(y, (tx, tw, tb), tg)

    (median, low, high), compared = compare_rounds(ours, theirs, repeat, synchronize=_synchronize(device))
    result = {"kernel": "batch_norm", "case": f"bn-{n}x{c}x{h}x{w}", "shape": f"{n}x{c}x{h}x{w}", "device": device,
              "dtype": np.dtype(dtype).name, "median_ms": median * 1e3, "min_ms": low * 1e3, "max_ms": high * 1e3}
    if compared is not None:
        result.update(comparison_fields(compared))
    return result


# Convolution algorithms side by side: every algorithm the plan could run for one layer and pass.
CONV_PASSES = {"conv2d_forward": ("forward",), "conv2d_backward": ("backward_input", "backward_weight"),
               "conv2d": ("forward", "backward_input", "backward_weight")}


def time_plan(chosen, repeat, dtype=np.float32):
    """(median, min, max) seconds of one pass run by a plan (nbconv.kernels.cpu.conv.plan), on random data."""
    from .kernels.cpu.conv import dispatch
    rng = np.random.default_rng(0)
    convolution = chosen.convolution
    x = rng.standard_normal(convolution.input_shape).astype(dtype)
    w = rng.standard_normal(convolution.weight_shape).astype(dtype)
    grad_y = rng.standard_normal(convolution.output_shape).astype(dtype)
    if chosen.pass_ == "forward":
        bias, output = np.zeros(w.shape[0], dtype), np.empty_like(grad_y)
        run = lambda: dispatch.run_forward(chosen, x, w, bias, output)  # noqa: E731
    elif chosen.pass_ == "backward_input":
        grad_input = np.empty_like(x)
        run = lambda: dispatch.run_backward_input(chosen, grad_y, w, grad_input)  # noqa: E731
    else:
        grad_weight = np.empty_like(w)
        run = lambda: dispatch.run_backward_weight(chosen, grad_y, x, grad_weight)  # noqa: E731
    return time_call(run, repeat)


def algorithm_cases(shape, kernel, dtype, repeat, algorithms="all"):
    """Time each algorithm that applies to each pass of `kernel` on a ConvShape (CPU), side by side: one
    result per (pass, algorithm), the plan's own choice marked. algorithms: 'all' or a list of names."""
    from .kernels.cpu.conv import plan as planning
    hyper = (shape.s, shape.s, shape.p, shape.p, 1, 1, shape.g)
    input_shape, weight_shape = (shape.n, shape.c, shape.h, shape.w), (shape.d, shape.c // shape.g, shape.k, shape.k)
    results = []
    for pass_ in CONV_PASSES[kernel]:
        chosen = planning.plan(pass_, input_shape, weight_shape, *hyper, dtype=dtype)
        names = planning.applicable(pass_, chosen.convolution)
        if algorithms != "all":
            names = [name for name in names if name in algorithms]
        for name in names:
            forced = planning.plan(pass_, input_shape, weight_shape, *hyper, dtype=dtype, algorithm=name)
            median, low, high = time_plan(forced, repeat, dtype)
            results.append({"case": shape.name, "shape": shape.describe(), "pass": pass_, "algorithm": name,
                            "chosen": name == chosen.algorithm, "buffer_bytes": forced.nbytes,
                            "median_ms": 1e3 * median, "min_ms": 1e3 * low, "max_ms": 1e3 * high,
                            "gflops": shape.forward_flops() / median / 1e9})
    return results
