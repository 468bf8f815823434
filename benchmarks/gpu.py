"""Validate and time nbconv on a GPU in one command (under 10 minutes on one GPU).

    python benchmarks/gpu.py            # print the results
    python benchmarks/gpu.py --write    # and write them as a section of benchmarks/RESULTS.md

On a machine with a usable CUDA GPU it:
1. runs the CUDA test files on the real device (NUMBA_ENABLE_CUDASIM=0): the CPU/CUDA agreement tests,
   interop and nbconv.torch, in a child process (pytest-xdist workers when installed) while the timings
   below run, since compiling the kernels is most of its time;
2. times the layer set (as `nbconv bench --preset layers --device cuda`: conv2d forward+backward) and,
   when a CUDA build of PyTorch is importable, the same layers in PyTorch (cuDNN), in alternating rounds;
3. times training steps of LeNet-5 (batch 64, 1x28x28) and of a ResNet-20-sized network (19 3x3
   convolutions of 16/32/64 channels on 3x32x32, batch 128, without the skip connections) against the
   same networks in PyTorch on the GPU;
4. times one LeNet-5 epoch on full MNIST (a whole `nbconv train` process) on the GPU and on the CPU, each
   with a cold and then a warm JIT cache;
5. measures the host cost of a launch of a tiny kernel (nbconv's launcher, Numba's configured kernel
   called directly, the same kernel launched straight from its compiled overload, CuPy's and PyTorch's
   launches of the same operation when they are importable with CUDA) and of a device allocation (Numba's,
   nbconv's device pool);
6. profiles a LeNet-5 training step on the device: kernel launches and new device allocations a step,
   host time to issue it against the time to run it, with nbconv's device pool and without.

`--budget SECONDS` bounds the whole run; `--out DIR` keeps results.json and section.md there after every
step, so that a run cut short keeps what it measured.

Exit status: 0 when everything ran and passed, and also when there is no usable GPU (it says why and
measures nothing); 1 when a step failed (failed tests, a crash); 2 on bad arguments.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from sections import replace_section  # noqa: E402

SECTION = "benchmarks/gpu.py"
BUDGET_SECONDS = 540
EPOCH_SECONDS = 75  # kept for the whole-process epochs at the end (about 30 s on an H200 host)
TEST_FILES = ("tests/test_cuda_kernels.py", "tests/test_cuda_launches_per_step.py", "tests/test_interop.py",
              "tests/test_torch.py")
RESNET20_SIZED = ("[conv16k3p1,relu]*7,conv32k3s2p1,relu,[conv32k3p1,relu]*5,conv64k3s2p1,relu,"
                  "[conv64k3p1,relu]*5,gap,flatten,fc10")


def gpu_status():
    from nbconv import backend
    return backend.cuda_status()


def cuda_torch():
    """PyTorch when it is importable and has CUDA, else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _synchronize_all(torch):
    from numba import cuda

    def synchronize():
        cuda.synchronize()
        if torch is not None:
            torch.cuda.synchronize()
    return synchronize


def start_tests():
    """Start the CUDA test files on the real device in a child process (several pytest-xdist workers when
    xdist is installed, since compiling the kernels dominates); returns (process, started, log path)."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0", PYTHONUNBUFFERED="1")
    workers = []
    try:
        import xdist  # noqa: F401
        workers = ["-n", str(max(1, min(6, (os.cpu_count() or 2) // 2)))]
    except ImportError:
        pass
    log_path = os.path.join("/tmp", "nbconv-gpu-tests.log")
    log = open(log_path, "w")
    process = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *workers,
                                *TEST_FILES], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    return process, time.perf_counter(), log_path


def finish_tests(running, timeout):
    """Wait for the test run started by start_tests, at most `timeout` seconds more."""
    process, started, log_path = running
    try:
        process.wait(timeout=max(1, timeout))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        output = open(log_path).read()
        return {"passed": False, "summary": f"timed out after {time.perf_counter() - started:.0f} s",
                "seconds": time.perf_counter() - started, "output": output[-3000:]}
    output = open(log_path).read()
    lines = [line for line in output.splitlines() if line.strip()]
    return {"passed": process.returncode == 0, "summary": lines[-1] if lines else "no output",
            "seconds": time.perf_counter() - started,
            "output": output[-3000:] if process.returncode else ""}


def layer_rows(torch, repeat=5):
    """conv2d forward+backward per layer of the layer set: nbconv and PyTorch (cuDNN) on the GPU."""
    from nbconv import bench
    rows = []
    synchronize = _synchronize_all(torch)
    for shape in bench.LAYER_SET:
        torch_both = None
        if torch is not None:
            x = torch.randn((shape.n, shape.c, shape.h, shape.w), device="cuda", requires_grad=True)
            w = (torch.randn((shape.d, shape.c // shape.g, shape.k, shape.k), device="cuda") * 0.1).requires_grad_()
            b = torch.zeros(shape.d, device="cuda", requires_grad=True)

            def torch_both(x=x, w=w, b=b, shape=shape):
                y = torch.nn.functional.conv2d(x, w, b, stride=shape.s, padding=shape.p, groups=shape.g)
                y.backward(torch.ones_like(y))
                torch.cuda.synchronize()

        (median, _, _), compared = bench.compare_rounds(_conv_both(shape), torch_both, repeat,
                                                        synchronize=synchronize)
        row = {"layer": shape.name, "shape": shape.describe(), "nbconv_ms": median * 1e3,
               "gflops": 3 * shape.forward_flops() / median / 1e9}
        if compared is not None:
            row.update({"torch_ms": compared.median * 1e3, "ratio": compared.ratio,
                        "ratio_low": compared.ratio_low, "ratio_high": compared.ratio_high})
        rows.append(row)
    return rows


def pass_rows(repeat=10):
    """nbconv's conv2d per pass on the GPU (forward, input gradient, weight+bias gradient), per layer of the
    layer set: where the time of layer_rows goes."""
    import nbconv.functional as F
    from nbconv import bench
    from numba import cuda
    rows = []
    for shape in bench.LAYER_SET:
        x, w, b, hyper, grad_y = _layer_arrays(shape)
        passes = {"forward": lambda: F.conv2d(x, w, b, **hyper),
                  "input": lambda: F.conv2d_backward(grad_y, x, w, need_weight_grad=False, **hyper),
                  "weight": lambda: F.conv2d_backward(grad_y, x, w, need_input_grad=False, **hyper)}
        row = {"layer": shape.name}
        for name, function in passes.items():
            median, _, _ = bench.time_call(function, repeat, synchronize=cuda.synchronize)
            row[name + "_ms"] = median * 1e3
            row[name + "_gflops"] = shape.forward_flops() / median / 1e9
        rows.append(row)
    return rows


def _layer_arrays(shape):
    """(input, weight, bias, hyper-parameters, output gradient) on the GPU for one layer shape: random
    input and weights, zero bias, an output gradient of ones."""
    import nbconv.functional as F
    from nbconv import backend
    rng = np.random.default_rng(0)
    x = backend.to_device(rng.standard_normal((shape.n, shape.c, shape.h, shape.w)).astype(np.float32))
    w = backend.to_device((rng.standard_normal((shape.d, shape.c // shape.g, shape.k, shape.k)) * 0.1)
                          .astype(np.float32))
    b = backend.to_device(np.zeros(shape.d, np.float32))
    hyper = dict(stride=shape.s, padding=shape.p, groups=shape.g)
    grad_y = backend.to_device(np.ones(F.conv2d(x, w, b, **hyper).shape, np.float32))
    return x, w, b, hyper, grad_y


def _conv_both(shape):
    """nbconv's conv2d forward + backward on the GPU for one layer shape, as a function to time."""
    import nbconv.functional as F
    x, w, b, hyper, grad_y = _layer_arrays(shape)

    def both():
        F.conv2d(x, w, b, **hyper)
        F.conv2d_backward(grad_y, x, w, **hyper)
    return both


def _training_step(spec, input_shape, batch):
    """(model, step): a network built from `spec` on the GPU and a function running one training step of it
    (forward, softmax cross-entropy, backward, SGD with momentum) on a fixed random batch."""
    import nbconv.functional as F
    from nbconv import backend, models
    from nbconv.train import TrainConfig, make_optimizer
    rng = np.random.default_rng(0)
    model = models.build(spec, input_shape=input_shape, seed=0).to("cuda")
    optimizer = make_optimizer(TrainConfig(lr=0.01), model.parameters())
    images = backend.to_device(rng.standard_normal((batch,) + tuple(input_shape)).astype(np.float32))
    labels = backend.to_device(rng.integers(0, 10, batch))

    def step():
        model.train()
        _, grad = F.softmax_cross_entropy(model.forward(images), labels)
        model.backward(grad, need_input_grad=False)
        optimizer.step()
    return model, step


def network_rows(torch, repeat=10):
    """Training steps (SGD with momentum) of LeNet-5 and a ResNet-20-sized network, nbconv vs PyTorch."""
    from nbconv import bench
    rows = []
    synchronize = _synchronize_all(torch)
    for name, spec, input_shape, batch in (("lenet5", "lenet5", (1, 28, 28), 64),
                                           ("resnet20-sized (no skips)", RESNET20_SIZED, (3, 32, 32), 128)):
        model, step = _training_step(spec, input_shape, batch)

        theirs = None
        if torch is not None:
            torch_model = _torch_twin(torch, model, input_shape).cuda()
            torch_optimizer = torch.optim.SGD(torch_model.parameters(), lr=0.01, momentum=0.9)
            torch_images = torch.randn((batch,) + input_shape, device="cuda")
            torch_labels = torch.randint(0, 10, (batch,), device="cuda")

            def theirs():
                torch_optimizer.zero_grad()
                torch.nn.functional.cross_entropy(torch_model(torch_images), torch_labels).backward()
                torch_optimizer.step()
                torch.cuda.synchronize()

        (median, _, _), compared = bench.compare_rounds(step, theirs, repeat, synchronize=synchronize)
        row = {"network": name, "batch": batch, "nbconv_ms": median * 1e3, "images_per_s": batch / median}
        if compared is not None:
            row.update({"torch_ms": compared.median * 1e3, "ratio": compared.ratio,
                        "ratio_low": compared.ratio_low, "ratio_high": compared.ratio_high})
        rows.append(row)
    return rows


def _torch_twin(torch, model, input_shape):
    """The same stack of layers in PyTorch (convolutions, ReLU, pooling, flatten, fully connected)."""
    from nbconv.nn import layers
    nn = torch.nn
    modules = []
    channels = input_shape[0]
    for layer in model.layers:
        if isinstance(layer, layers.Conv2d):
            weight = layer.weight.value
            modules.append(nn.Conv2d(channels, weight.shape[0], tuple(weight.shape[2:]), **_conv_options(layer)))
            channels = weight.shape[0]
        elif isinstance(layer, layers.ReLU):
            modules.append(nn.ReLU())
        elif isinstance(layer, layers.MaxPool2d):
            modules.append(nn.MaxPool2d(layer.hyper["kernel_size"], layer.hyper["stride"]))
        elif isinstance(layer, layers.GlobalAvgPool2d):
            modules.append(nn.AdaptiveAvgPool2d(1))
        elif isinstance(layer, layers.Flatten):
            modules.append(nn.Flatten())
        elif isinstance(layer, layers.Linear):
            modules.append(nn.LazyLinear(layer.weight.value.shape[0]))
        else:
            raise ValueError(f"no PyTorch twin for {type(layer).__name__}")
    twin = nn.Sequential(*modules)
    twin(torch.zeros((1,) + tuple(input_shape)))  # materialise the lazy layers
    return twin


def _conv_options(layer):
    hyper = getattr(layer, "hyper", {})
    return {key: hyper[key] for key in ("stride", "padding", "dilation", "groups") if key in hyper}


def epoch_rows(deadline):
    """One LeNet-5 epoch and test pass as whole `nbconv train` processes on the GPU and on the CPU, each run
    twice: first on an empty or partly filled JIT cache (cold), then with every kernel cached (warm)."""
    rows = []
    for device in ("cuda", "cpu"):
        for run in ("cold", "warm"):
            timeout = deadline - time.perf_counter()
            if timeout < 20:
                rows.append({"device": device, "run": run, "seconds": None, "summary": "skipped: out of time"})
                continue
            started = time.perf_counter()
            try:
                completed = subprocess.run([sys.executable, "-m", "nbconv", "train", "lenet5", "--epochs", "1",
                                            "--device", device, "--out", os.path.join("/tmp", f"gpu-bench-{device}.npz")],
                                           cwd=ROOT, capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                rows.append({"device": device, "run": run, "seconds": None, "summary": f"timed out after {timeout:.0f} s"})
                continue
            lines = [line for line in completed.stdout.splitlines() if line.startswith("done in")]
            rows.append({"device": device, "run": run,
                         "seconds": time.perf_counter() - started if completed.returncode == 0 else None,
                         "summary": (lines[-1] if lines else completed.stderr[-300:]).strip()})
    return rows


def launch_rows(repeat=2000):
    """Host microseconds per launch of a tiny kernel (relu over 256 floats): through nbconv's launcher
    (Numba's dispatcher: typing, configuration), straight from the compiled overload (what a cached
    launch could save), and one device allocation (cuMemAlloc through Numba's default memory manager)."""
    from numba import cuda
    from nbconv import backend
    from nbconv.kernels import cuda as cuda_kernels
    from nbconv.kernels.cuda import activation
    from nbconv.kernels.cuda.launch import grid_for
    x = backend.to_device(np.ones(256, np.float32))
    y = backend.empty((256,), np.float32, "cuda")
    cuda_kernels.relu_forward(x, y)
    cuda.synchronize()

    def timed(function):
        started = time.perf_counter()
        for _ in range(repeat):
            function()
        cuda.synchronize()
        return (time.perf_counter() - started) / repeat * 1e6

    rows = [{"path": "nbconv launcher (relu_forward)", "microseconds": timed(lambda: cuda_kernels.relu_forward(x, y))}]
    try:
        overload = next(iter(activation._relu_forward.overloads.values()))
        configured = activation._relu_forward[grid_for(256)]
        rows.append({"path": "compiled overload launched directly", "microseconds": timed(
            lambda: overload.launch((x, y), configured.griddim, configured.blockdim, configured.stream, 0))})
    except Exception as error:  # an internal API of numba-cuda: report, do not fail the run
        rows.append({"path": f"compiled overload launched directly: not measured ({error})", "microseconds": float("nan")})
    configured = activation._relu_forward[grid_for(256)]
    rows.insert(1, {"path": "Numba's configured kernel called directly (no nbconv code)",
                    "microseconds": timed(lambda: configured(x, y))})
    rows += _foreign_launch_rows(timed)
    rows.append({"path": "device allocation of 256 floats (cuda.device_array)",
                 "microseconds": timed(lambda: cuda.device_array(256, np.float32))})
    rows.append({"path": "device allocation of 256 floats from nbconv's pool (backend.empty, steady state)",
                 "microseconds": timed(lambda: backend.empty((256,), np.float32, "cuda"))})
    return rows


def _foreign_launch_rows(timed):
    """The same relu over 256 floats launched by CuPy (an element-wise kernel) and PyTorch, when present."""
    rows = []
    try:
        import cupy
        x = cupy.ones(256, cupy.float32)
        y = cupy.empty_like(x)
        relu = cupy.ElementwiseKernel("float32 x", "float32 y", "y = x > 0 ? x : 0", "nbconv_bench_relu")
        relu(x, y)
        rows.append({"path": f"CuPy {cupy.__version__} element-wise kernel launch",
                     "microseconds": timed(lambda: relu(x, y))})
    except Exception as error:  # absent, or without a usable CUDA: say so
        rows.append({"path": f"CuPy launch: not measured ({type(error).__name__}: {error})"[:160],
                     "microseconds": float("nan")})
    torch = cuda_torch()
    if torch is not None:
        t = torch.ones(256, device="cuda")
        out = torch.empty_like(t)
        rows.append({"path": f"PyTorch {torch.__version__} torch.clamp_min(out=) launch (a relu)",
                     "microseconds": timed(lambda: torch.clamp_min(t, 0, out=out))})
    return rows


def step_rows(repeat=30):
    """A LeNet-5 training step (batch 64, SGD with momentum) on the device: kernel launches and new device
    allocations a step (the third, once warm), the host time to issue a step (no synchronisation) and the
    time to run it (synchronised), with nbconv's device pool and without (NBCONV_DEVICE_POOL=0)."""
    from numba import cuda
    from nbconv import device_pool
    rows = []
    for pooled in (True, False):
        os.environ[device_pool.ENV_VARIABLE] = "1" if pooled else "0"
        try:
            _, step = _training_step("lenet5", (1, 28, 28), 64)
            step()
            step()
            cuda.synchronize()
            launches, allocations = _count_launches_and_allocations(step)
            issued = []
            run = []
            for _ in range(repeat):
                cuda.synchronize()
                started = time.perf_counter()
                step()
                issued.append(time.perf_counter() - started)
                cuda.synchronize()
                run.append(time.perf_counter() - started)
            rows.append({"pool": pooled, "launches": launches, "allocations": allocations,
                         "host_ms": float(np.median(issued)) * 1e3, "step_ms": float(np.median(run)) * 1e3})
        finally:
            os.environ.pop(device_pool.ENV_VARIABLE, None)
    return rows


def host_profile(steps=50, top=30):
    """Where the host time of a LeNet-5 training step on the device goes: cProfile over `steps` steps, the
    `top` functions by own time (text)."""
    import cProfile
    import io
    import pstats
    from numba import cuda
    _, step = _training_step("lenet5", (1, 28, 28), 64)
    for _ in range(3):
        step()
    cuda.synchronize()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(steps):
        step()
    cuda.synchronize()
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
    return text.getvalue()


def _count_launches_and_allocations(function):
    """(kernel launches, cuMemAlloc-backed allocations) while `function` runs: launches through Numba's
    configured kernels, allocations through numba.cuda.device_array (what nbconv's pool calls on a miss)."""
    from numba import cuda
    from numba.cuda import dispatcher
    counts = {"launches": 0, "allocations": 0}
    original_call = dispatcher._LaunchConfiguration.__call__
    original_alloc = cuda.device_array

    def call(self, *args):
        counts["launches"] += 1
        return original_call(self, *args)

    def device_array(*args, **kwargs):
        counts["allocations"] += 1
        return original_alloc(*args, **kwargs)
    dispatcher._LaunchConfiguration.__call__ = call
    cuda.device_array = device_array
    try:
        function()
        cuda.synchronize()
    finally:
        dispatcher._LaunchConfiguration.__call__ = original_call
        cuda.device_array = original_alloc
    return counts["launches"], counts["allocations"]


def _ratio(row):
    if "ratio" not in row:
        return "n/a"
    return f"{row['ratio']:.2f}x [{row['ratio_low']:.2f}-{row['ratio_high']:.2f}]"


def report(device, results):
    import numba
    lines = [f"## GPU: {device}", "",
             f"Command: `python benchmarks/gpu.py --write` (numba {numba.__version__}, numba-cuda "
             f"{results.get('numba_cuda', '?')}, Python {platform.python_version()}, host with {os.cpu_count()} "
             f"logical CPUs{', PyTorch ' + results['torch'] if results.get('torch') else ', no CUDA PyTorch'}). "
             "Ratios are PyTorch's time over nbconv's, median of 5 alternating rounds with the range over the "
             "rounds in brackets: above 1 means nbconv is faster. PyTorch runs in float32 like nbconv (TF32 off).",
             ""]
    if results.get("tests"):
        lines += [f"CUDA tests on the device ({', '.join(TEST_FILES)}): {results['tests']['summary']} "
                  f"({results['tests']['seconds']:.0f} s)", ""]
    if results.get("layers"):
        lines += ["| layer | shape | nbconv fwd+bwd ms | GFLOP/s | PyTorch ms | ratio |", "|---|---|---:|---:|---:|---:|"]
        for row in results["layers"]:
            lines.append(f"| {row['layer']} | {row['shape']} | {row['nbconv_ms']:.3f} | {row['gflops']:.0f} | "
                         f"{row.get('torch_ms', float('nan')):.3f} | {_ratio(row)} |")
        lines.append("")
    if results.get("passes"):
        lines += ["| layer | forward ms (GFLOP/s) | input gradient ms (GFLOP/s) | weight+bias gradient ms (GFLOP/s) |",
                  "|---|---:|---:|---:|"]
        for row in results["passes"]:
            lines.append(f"| {row['layer']} | " + " | ".join(
                f"{row[name + '_ms']:.3f} ({row[name + '_gflops']:.0f})" for name in ("forward", "input", "weight")) + " |")
        lines.append("")
    if results.get("networks"):
        lines += ["| training step | batch | nbconv ms | images/s | PyTorch ms | ratio |", "|---|---:|---:|---:|---:|---:|"]
        for row in results["networks"]:
            lines.append(f"| {row['network']} | {row['batch']} | {row['nbconv_ms']:.3f} | {row['images_per_s']:,.0f} | "
                         f"{row.get('torch_ms', float('nan')):.3f} | {_ratio(row)} |")
        lines.append("")
    for row in results.get("epochs", []):
        seconds = "not measured" if row["seconds"] is None else f"{row['seconds']:.1f} s"
        lines.append(f"- LeNet-5, one epoch + test, whole `nbconv train` process on {row['device']} ({row['run']} "
                     f"JIT cache): {seconds} ({row['summary']})")
    warm = {row["device"]: row["seconds"] for row in results.get("epochs", []) if row["run"] == "warm"}
    if warm.get("cuda") and warm.get("cpu"):
        lines.append(f"- warm whole-process epoch, GPU against this host's CPU: {warm['cpu'] / warm['cuda']:.1f}x")
    for row in results.get("launches", []):
        lines.append(f"- host cost per call, {row['path']}: {row['microseconds']:.1f} us")
    for row in results.get("steps", []):
        lines.append(f"- LeNet-5 training step (batch 64) {'with' if row['pool'] else 'without'} nbconv's device pool: "
                     f"{row['launches']} kernel launches, {row['allocations']} new device allocations a step; "
                     f"{row['host_ms']:.2f} ms to issue, {row['step_ms']:.2f} ms to run "
                     f"({'launch-bound' if row['host_ms'] > 0.8 * row['step_ms'] else 'device-bound'})")
    if results.get("profile"):
        lines += ["", "Host time of 50 LeNet-5 training steps on the device, by function (cProfile, own time):", "",
                  "```", *[line for line in results["profile"].splitlines() if line.strip()][:24], "```"]
    for key, value in results.items():
        if key.endswith(("_error", "_skipped")):
            lines.append(f"- {key.rsplit('_', 1)[0]}: {value}")
    return "\n".join(lines) + "\n"


def _numba_cuda_version():
    try:
        from importlib.metadata import version
        return version("numba-cuda")
    except Exception:  # numba's built-in CUDA target, or no metadata
        return "built into numba"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help="write the results into benchmarks/RESULTS.md")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--out", metavar="DIR", help="also keep results.json and section.md in DIR, updated "
                        "after every step (so an interrupted run keeps what it measured)")
    parser.add_argument("--budget", type=float, default=BUDGET_SECONDS, metavar="SECONDS",
                        help=f"stop starting new steps after this many seconds (default {BUDGET_SECONDS})")
    options = parser.parse_args(argv)
    os.environ["NUMBA_ENABLE_CUDASIM"] = "0"  # the real device, whatever the caller's environment says
    usable, reason = gpu_status()
    if not usable:
        print(f"no usable GPU here ({reason}): nothing to measure; run this on a machine with an NVIDIA GPU")
        return 0
    deadline = time.perf_counter() + options.budget
    torch = cuda_torch()
    if torch is not None:  # float32 against float32: no TF32 in PyTorch's convolutions and products
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    results = {"torch": torch.__version__ if torch is not None else None, "numba_cuda": _numba_cuda_version()}

    def keep():
        if options.out:
            os.makedirs(options.out, exist_ok=True)
            with open(os.path.join(options.out, "results.json"), "w") as out:
                json.dump(results, out, indent=1, default=str)
            with open(os.path.join(options.out, "section.md"), "w") as out:
                out.write(report(reason, results))

    failed = False
    tests = start_tests()  # compiles on other cores while this process times
    steps = (("launches", lambda: launch_rows()), ("steps", lambda: step_rows()), ("layers", lambda: layer_rows(torch)),
             ("networks", lambda: network_rows(torch)),
             ("passes", lambda: pass_rows()), ("profile", lambda: host_profile()),
             ("tests", lambda: finish_tests(tests, deadline - EPOCH_SECONDS - time.perf_counter())),
             ("epochs", lambda: epoch_rows(deadline)))
    for name, step in steps:
        if time.perf_counter() > deadline and name != "tests":
            results[name + "_skipped"] = "out of time"
            continue
        try:
            results[name] = step()
            if name == "tests":
                failed |= not results["tests"]["passed"]
        except Exception as error:  # one failed step must not lose the others' numbers
            results[name + "_error"] = f"{type(error).__name__}: {error}"
            failed = True
        print(f"[gpu.py] {name} done at {options.budget - (deadline - time.perf_counter()):.0f} s", flush=True)
        keep()
    text = report(reason, results)
    print(json.dumps(results, indent=1, default=str) if options.json else text)
    if options.write:
        replace_section(os.path.join(HERE, "RESULTS.md"), SECTION, text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
