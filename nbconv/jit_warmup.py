"""Compile a training step's kernels in two processes at once when Numba's cache is cold.

On an empty JIT cache, a training step compiles a dozen or more parallel kernels, nearly all of it
single-threaded (Numba's front end is Python). Numba's cache lives on disk and is shared by processes, so
`nbconv train` starts `python -m nbconv.jit_warmup MODEL CxHxW`, a helper that builds the model, asks the
convolution plan which algorithm each convolution's backward passes will run (nbconv.model_plans), and runs
each of those once on a small copy of a layer it is planned for, with the training batches' assembly and the
other layers' backward kernels (HELPER_KINDS); meanwhile the main process builds the model and checks it (which
compiles the forward kernels, as the same plan picks them), then compiles the cheaper rest of a step itself
(`finish`). Numba compiles per argument type, not per shape, so the small arrays give the training step's own
compilations; the main process then loads the helper's from the cache. If the helper fails, the main process
simply compiles those kernels itself, later.

The helper's list (helper_jobs) is shared: the helper works through it from the front, and the main process,
once its own part is done, from the back, each job going to whichever process claims it first (a file created
in a folder both know, `claim`). So neither process idles while the other still has jobs waiting, whatever
the machine's load, the model or the jobs' sizes: they end at most one job apart.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

from . import models

WAIT_SECONDS = 300
# Besides the convolutions' backward passes, the helper compiles these (about half a step's compiling in all):
# batch norm's and the fully connected layers' backward passes too.
HELPER_KINDS = ("local", "maxpool", "avgpool", "gap", "bn", "fc", "fc relu")
# The order the helper compiles the convolutions' backward passes in. The main process compiles the forward
# passes meanwhile, in the model's layer order, and a row helper shared by a forward and a backward kernel
# (gemm's im2col_rows and unrolled, wide's unroll_task) is compiled once, by whichever process gets to it first,
# the other loading it from the cache if it is there by then (lanes' spans inline their row helpers: nothing
# of theirs is shared since benchmarks/NOTES.md, section 82). The helper starts with lanes' input gradient
# and with the kernels whose row helpers no forward of the main process
# compiles (strips' weight gradient: a model whose forward runs strips, as LeNet-5's second layer does, then
# finds strips' unroll_task in the cache), and leaves gemm's and wide's weight gradients to the end of its list:
# the main process has compiled their row helpers in its forwards by then, and it takes the list's last jobs
# itself when it is done first.
_HELPER_ORDER = (("backward_input", "lanes"), ("backward_weight", "strips"), ("backward_input", "strips"),
                 ("backward_input", "direct"), ("backward_input", "winograd"), ("backward_input", "shift"),
                 ("backward_input", "gemm"))
_HELPER_LAST = (("backward_weight", "wide"), ("backward_weight", "gemm"))
# The backward-kernel family of each other layer type (layers not named here compile in the first step).
LAYER_KINDS = {"LocallyConnected2d": "local", "MaxPool2d": "maxpool", "AvgPool2d": "avgpool",
               "GlobalAvgPool2d": "gap", "ReLU": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "LeakyReLU": "lrelu",
               "Dropout": "dropout", "Linear": "fc", "BatchNorm2d": "bn", "BatchNorm1d": "bn"}
# The algorithms that run numpy alone: no job for the helper.
NOTHING_TO_COMPILE = ("subsampled",)
# The algorithms whose forward pass compiles row helpers that their backward passes call too. lanes' did until
# its spans inlined them (section 82); its rule, which orders ResNet-20's helper, stays as section 76 measured it
# until a timeline of the new kernels says otherwise.
FORWARD_SHARES = ("lanes",)
# A tiny convolution each algorithm applies to: (input shape, weight shape, hyper-parameters in the kernels' order)
_TINY = {"depthwise3x3": ((2, 2, 5, 5), (2, 1, 3, 3), (1, 1, 1, 1, 1, 1, 2)),
         "pointwise": ((2, 2, 5, 5), (2, 2, 1, 1), (1, 1, 0, 0, 1, 1, 1)),
         "pointwise_weight": ((2, 2, 5, 5), (2, 2, 1, 1), (1, 1, 0, 0, 1, 1, 1)),
         "pointwise_tiles": ((2, 8, 4, 4), (8, 8, 1, 1), (1, 1, 0, 0, 1, 1, 1)),
         "gemm": ((2, 2, 5, 5), (2, 2, 3, 3), (2, 2, 1, 1, 1, 1, 1)),
         "packed": ((2, 2, 5, 5), (2, 2, 1, 1), (2, 2, 0, 0, 1, 1, 1)),
         "subsampled": ((2, 2, 5, 5), (2, 2, 1, 1), (2, 2, 0, 0, 1, 1, 1)),
         "row_lanes": ((2, 6, 5, 8), (2, 6, 3, 3), (1, 1, 1, 1, 1, 1, 1))}
_TINY_STRIDE_1 = ((2, 2, 5, 5), (2, 2, 3, 3), (1, 1, 1, 1, 1, 1, 1))  # winograd, shift, wide, direct
EXAMPLE_SIZE = 16  # a model's layer, as the helper runs it: at most this many rows and columns, where it applies


def cache_is_cold():
    """True when none of wide's, strips' and lanes' weight-gradient kernels (lanes: LeNet-5's second layer,
    which runs no wide kernel; ResNet-20's) has anything in Numba's cache for its current source.

    Reads Numba's cache index through private attributes; if they ever move, this answers False (no helper)."""
    from .kernels.cpu.conv import lanes, strips, wide
    try:
        return not any(kernel._cache._cache_file._load_index() for kernel in
                       (wide.conv2d_backward_weight_wide_span, strips.conv2d_backward_weight_strips_span,
                        lanes.conv2d_backward_weight_lanes_span))
    except Exception:  # noqa: BLE001 - any change in Numba's internals only disables the speed-up
        return False


# The kernels cache_is_cold looks at: (module under kernels/cpu/conv, dispatcher name).
_COLD_MARKERS = (("wide", "conv2d_backward_weight_wide_span"), ("strips", "conv2d_backward_weight_strips_span"),
                 ("lanes", "conv2d_backward_weight_lanes_span"))


def cache_is_empty():
    """True when Numba's cache holds no index file at all for cache_is_cold's kernels (an empty or a new
    cache), found from the files' names without importing the kernels' modules (cache_is_cold's imports cost
    ~0.13 s, which `nbconv train` overlaps with loading the data); False when any is there or when Numba's
    cache layout cannot be read (then cache_is_cold decides, later)."""
    import glob
    try:
        from numba.core import caching
        conv = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels", "cpu", "conv")
        for module, kernel in _COLD_MARKERS:
            source = os.path.join(conv, f"{module}.py")
            probe = (lambda: None)
            probe.__code__ = probe.__code__.replace(co_filename=source)  # where Numba looks for the module's cache
            locator = next(locator for locator in (cls.from_function(probe, source)
                                                   for cls in caching.CacheImpl._locator_classes) if locator)
            if glob.glob(os.path.join(glob.escape(locator.get_cache_path()), f"{module}.{kernel}-*.nbi")):
                return False
        return True
    except Exception:  # noqa: BLE001 - any change in Numba's internals only means "not known to be empty"
        return False


def convolution_kernels(model, input_shape):
    """The CPU convolution kernels a training step of `model` runs: sorted (pass, algorithm, dtype name)."""
    from .model_plans import layer_plans
    return sorted({(entry.plan.pass_, entry.plan.algorithm, np.dtype(entry.layer.weight.value.dtype).name)
                   for entry in layer_plans(model, input_shape)})


def kernel_examples(model, input_shape):
    """{(pass, algorithm, dtype name): Convolution}: for each convolution kernel a training step of `model` runs,
    the geometry (batch 1) of the first layer that runs it, so that the helper compiles each kernel on a
    convolution its algorithm is planned for, whatever the plan's rules."""
    from .model_plans import layer_plans
    examples = {}
    for entry in layer_plans(model, input_shape):
        kernel = (entry.plan.pass_, entry.plan.algorithm, np.dtype(entry.layer.weight.value.dtype).name)
        examples.setdefault(kernel, entry.plan.convolution)
    return examples


def needs_bias_gradient(model):
    """True when a training step of `model` runs the convolutions' bias-gradient kernel: some Conv2d has a
    bias, or some Conv1d (whose backward always returns one)."""
    from .nn import Conv1d, Conv2d
    return any(isinstance(layer, Conv1d) or (isinstance(layer, Conv2d) and layer.bias is not None)
               for _, layer in model.named_layers())


def layer_kinds(model):
    """The backward-kernel families of the model's other layers: 'local', 'maxpool', 'avgpool', 'gap',
    'relu', 'tanh', 'sigmoid', 'lrelu', 'dropout', 'fc', 'bn' (training-mode batch norm, both passes), and
    'fc relu' where a fully connected layer runs right before a ReLU (the pair runs fused: nn.Linear.fuses_with)."""
    names = [type(layer).__name__ for _, layer in model.named_layers()]
    kinds = {LAYER_KINDS[name] for name in names if name in LAYER_KINDS}
    if any(name == "Linear" and following == "ReLU" for name, following in zip(names, names[1:])):
        kinds.add("fc relu")
    return sorted(kinds)


def start(spec, device="cpu", input_shape=(1, 28, 28), program=None, stdout=subprocess.DEVNULL):
    """Start the helper for a model spec and input shape (C, H, W) when it can help (CPU, cold cache);
    returns it (a Popen or ForkedHelper, with `claims`, the folder of claim(), and `input_shape`) or None. A
    spec that does not build makes the helper exit at once (the main process reports it).

    On Linux, outside MPI, the helper is this process forked (ForkedHelper): it starts compiling at once,
    with numpy, Numba and the kernels already imported, where a new interpreter spends ~0.9 CPU s importing
    them and building the model before its first compile. Call it before starting any other thread (a lock
    a thread holds at the fork stays held in the child). Elsewhere, or with `program` (what the interpreter
    runs, given SPEC CxHxW CLAIMS: benchmarks/jit_profile.py runs the helper under its profiler), a new
    process runs `python -m nbconv.jit_warmup`."""
    if device != "cpu" or not cache_is_cold():
        return None
    claims = tempfile.mkdtemp(prefix="nbconv-jit-")
    try:
        if program is None and can_fork():
            helper = ForkedHelper.start(spec, input_shape, claims)
        else:
            helper = subprocess.Popen([sys.executable, *(program or ("-m", "nbconv.jit_warmup")), spec,
                                       "x".join(map(str, input_shape)), claims], stdin=subprocess.DEVNULL,
                                      stdout=stdout, stderr=stdout, env=os.environ.copy())
    except BaseException:
        shutil.rmtree(claims, ignore_errors=True)
        raise
    helper.claims, helper.input_shape = claims, tuple(input_shape)
    return helper


def can_fork():
    """Whether start() may fork this process: Linux (elsewhere fork is missing or unsafe with the system's
    libraries), no MPI library loaded (a forked MPI process must not exist beside its parent), and no Python
    thread besides this one (a lock another thread holds at the fork, Numba's compile lock say, would stay
    held in the child: `nbconv train` forks before it starts any)."""
    import threading
    return (sys.platform.startswith("linux") and hasattr(os, "fork") and "mpi4py.MPI" not in sys.modules
            and threading.active_count() == 1)


class ForkedHelper:
    """The helper as a child of this process made by os.fork, with the part of Popen's interface that the
    main process uses: poll, wait, kill, pid, returncode."""

    def __init__(self, pid):
        self.pid, self.returncode = pid, None

    @classmethod
    def start(cls, spec, input_shape, claims):
        """Fork; the child runs warm_up(spec, input_shape, claims), its output discarded, and exits (os._exit:
        no atexit handlers, no flush of buffers it shares with this process), 0 when it did its work."""
        import warnings
        with warnings.catch_warnings():  # Python 3.12+ warns of fork in a process with threads (BLAS's own)
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid:
            return cls(pid)
        status = 1
        try:
            devnull = os.open(os.devnull, os.O_RDWR)
            for descriptor in (0, 1, 2):
                os.dup2(devnull, descriptor)
            _become_helper()
            warm_up(spec, input_shape, claims)
            status = 0
        except BaseException:  # noqa: B902 - whatever happens, the child never returns into the caller's code
            pass
        finally:
            os._exit(status)

    def poll(self):
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout=None):
        """The exit status, once the child has exited; subprocess.TimeoutExpired after `timeout` seconds."""
        if timeout is None:
            if self.returncode is None:
                self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
            return self.returncode
        deadline, pause = time.monotonic() + timeout, 0.001
        while self.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(f"helper {self.pid}", timeout)
            time.sleep(min(pause, left))
            pause = min(2 * pause, 0.02)  # soon after a short job, at most 20 ms late after a long one
        return self.returncode

    def kill(self):
        if self.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def warm_up(spec, input_shape, claims=None):
    """The helper's work, helper_jobs: the backward passes of the model's convolutions, as planned, the batch
    assembly and HELPER_KINDS; with `claims` (the folder of claim()) only the jobs it claims before the main
    process does.

    The kernel threads' wait (spin.reached) is the list's last job: a main process whose model check started
    its kernel threads has compiled it by then (the helper then loads it from the cache); one whose model
    check ran on one thread (ResNet-20's batch of one image) would compile it at its first step, after the
    helper has nothing left to do."""
    model = models.build(spec, input_shape=input_shape)
    examples = kernel_examples(model, input_shape)
    for job in helper_jobs(model, input_shape):
        if claim(claims, job):
            run_job(job, model, examples)


def helper_jobs(model, input_shape):
    """The helper's work for `model`, in its order, as jobs ("convolution", (pass, algorithm, dtype name)),
    ("batch assembly", None), ("backward", layer kind) and ("spin wait", None): the convolutions' backward
    passes it starts with (helper_order), the batch assembly (the main process needs it last, after its model
    check and `finish`), HELPER_KINDS, the convolutions it leaves to the end, then the kernel threads' wait.

    Where the model's first convolution runs an algorithm of FORWARD_SHARES (its forward compiles row helpers
    the backward passes call: lanes' plane_products and copy_image, ~1.5 CPU s), the batch assembly and batch
    norm's backward pass come first: the main process compiles that forward first of all, and a helper that
    started with those backward passes compiled the same row helpers at the same time (ResNet-20: ~1.1 CPU s
    twice); a little later it loads them from the cache."""
    first, last = helper_order([kernel for kernel in convolution_kernels(model, input_shape)
                                if kernel[0] != "forward" and kernel[1] not in NOTHING_TO_COMPILE])
    kinds = [("backward", kind) for kind in layer_kinds(model) if kind in HELPER_KINDS]
    ahead = []
    if first_forward_algorithm(model, input_shape) in FORWARD_SHARES:
        ahead = [("batch assembly", None)] + [job for job in kinds if job[1] == "bn"]
    return (ahead + [("convolution", kernel) for kernel in first]
            + [job for job in [("batch assembly", None)] + kinds if job not in ahead]
            + [("convolution", kernel) for kernel in last] + [("spin wait", None)])


def first_forward_algorithm(model, input_shape):
    """The algorithm of the model's first convolution's forward pass (None without a convolution)."""
    from .model_plans import layer_plans
    return next((entry.plan.algorithm for entry in layer_plans(model, input_shape) if entry.plan.pass_ == "forward"),
                None)


def run_job(job, model, examples):
    """Compile what one of helper_jobs names, for `model` (examples: its kernel_examples)."""
    step, what = job
    if step == "convolution":
        compile_convolutions([what], bias=needs_bias_gradient(model), examples=examples)
    elif step == "batch assembly":
        compile_batch_assembly()
    elif step == "spin wait":
        from .kernels.cpu import threads
        threads.compile_wait()
    else:
        compile_backward([what])


def claim(claims, job):
    """True when this process takes `job`: the first to create the job's file in the folder `claims`; always
    True without a folder (None). False once the folder is gone (the main process is done with the helper)."""
    if claims is None:
        return True
    step, what = job
    name = "-".join([step.replace(" ", "_")] + ([] if what is None else [what] if isinstance(what, str)
                                                 else list(what)))
    try:
        os.close(os.open(os.path.join(claims, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except OSError:  # FileExistsError: the other process's; FileNotFoundError: no more work wanted
        return False
    return True


def helper_order(kernels):
    """The helper's (pass, algorithm, dtype name) convolution kernels as (first, last): those to compile
    before the other layer kinds, in _HELPER_ORDER and then as given, and those to compile after them,
    _HELPER_LAST's."""
    last = [kernel for kernel in kernels if kernel[:2] in _HELPER_LAST]
    ordered = sorted((kernel for kernel in kernels if kernel[:2] in _HELPER_ORDER),
                     key=lambda kernel: _HELPER_ORDER.index(kernel[:2]))
    return ordered + [kernel for kernel in kernels if kernel not in ordered and kernel not in last], last


def compile_convolutions(kernels, bias=True, examples=None):
    """Run each (pass, algorithm, dtype name) convolution kernel once, on the convolution `examples` gives
    for it (kernel_examples: batch 1 of a model's layer), else on tiny arrays; with `bias`, the bias-gradient
    kernel beside each weight gradient."""
    from .kernels.cpu.conv import dispatch
    from .kernels.cpu.conv.plan import plan
    rng = np.random.default_rng(0)
    for kernel in kernels:
        pass_, algorithm, dtype = kernel
        example = (examples or {}).get(kernel)
        if example is None:
            input_shape, weight_shape, hyper = _TINY.get(algorithm, _TINY_STRIDE_1)
            chosen = plan(pass_, input_shape, weight_shape, *hyper, dtype=dtype, algorithm=algorithm)
        else:
            chosen = _example_plan(pass_, algorithm, dtype, example)
            input_shape, weight_shape = chosen.convolution.input_shape, chosen.convolution.weight_shape
        x = rng.standard_normal(input_shape).astype(dtype)
        w = rng.standard_normal(weight_shape).astype(dtype)
        grad_y = rng.standard_normal(chosen.convolution.output_shape).astype(dtype)
        if pass_ == "forward":
            dispatch.run_forward(chosen, x, w, np.zeros(weight_shape[0], dtype), np.empty_like(grad_y))
        elif pass_ == "backward_input":
            dispatch.run_backward_input(chosen, grad_y, w, np.empty_like(x))
        else:
            dispatch.run_backward_weight(chosen, grad_y, x, np.empty_like(w))
            if bias:
                dispatch.conv2d_backward_bias(grad_y, np.empty(weight_shape[0], dtype))


def _example_plan(pass_, algorithm, dtype, example):
    """The plan for one kernel on an example convolution, its image cut to EXAMPLE_SIZE rows and columns when
    the algorithm still applies then (a VGG's 224 x 224 layers would cost more to run than to compile)."""
    from .kernels.cpu.conv.plan import plan
    N, C, H, W = example.input_shape
    smaller = (N, C, min(H, EXAMPLE_SIZE), min(W, EXAMPLE_SIZE))
    for input_shape in ([smaller] if smaller != example.input_shape else []) + [example.input_shape]:
        try:
            return plan(pass_, input_shape, example.weight_shape, *example.hyper, dtype=dtype, algorithm=algorithm)
        except ValueError:  # too small for the kernel's window, or for the algorithm
            if input_shape == example.input_shape:
                raise


def finish(helper, config, model):
    """With a helper running: compile the rest of a training step here (the layer kinds the helper leaves,
    the loss, the optimizer), then the helper's jobs it has not claimed yet, from the last one back, then
    wait for the helper. Without one, nothing to do."""
    if helper is None:
        return
    compile_backward([kind for kind in layer_kinds(model) if kind not in HELPER_KINDS])
    compile_step(config, batch_assembly=False)  # the helper's
    claims, input_shape = getattr(helper, "claims", None), getattr(helper, "input_shape", None)
    if claims is not None and input_shape is not None and helper.poll() is None:
        examples = kernel_examples(model, input_shape)
        for job in reversed(helper_jobs(model, input_shape)):
            if claim(claims, job):
                run_job(job, model, examples)
    wait(helper)


def wait(helper):
    """Wait for a helper from start() (None is fine); a helper that overstays is stopped."""
    if helper is None:
        return
    try:
        helper.wait(timeout=WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        stop(helper)
    _forget_claims(helper)


def stop(helper):
    """Stop a helper whose work is no longer wanted (None is fine)."""
    if helper is not None and helper.poll() is None:
        helper.kill()
        helper.wait()
    _forget_claims(helper)


def _forget_claims(helper):
    claims = getattr(helper, "claims", None)
    if claims is not None:
        shutil.rmtree(claims, ignore_errors=True)


def compile_backward(kinds, dtype=np.float32):
    """Run the backward kernels of these layer kinds once, on tiny arrays of `dtype` (their forward kernels
    compile where the main process checks the built model: batch norm runs the same kernels in eval mode
    as in training)."""
    from . import functional as F
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 2, 6, 6)).astype(dtype)
    if "local" in kinds:
        F.local_conv2d_backward(np.ones((2, 2, 4, 4), dtype), x, np.ones((4, 4, 2, 2, 3, 3), dtype))
    if "maxpool" in kinds:
        F.max_pool2d_backward(np.ones((2, 2, 3, 3), dtype), x, 2, indices=np.zeros((2, 2, 3, 3), np.int64))
    if "avgpool" in kinds:
        F.avg_pool2d_backward(np.ones((2, 2, 3, 3), dtype), x, 2)
    if "gap" in kinds:
        F.global_avg_pool2d_backward(np.ones((2, 2, 1, 1), dtype), x)
    for kind, backward in (("relu", F.relu_backward), ("tanh", F.tanh_backward), ("sigmoid", F.sigmoid_backward),
                           ("lrelu", F.leaky_relu_backward), ("dropout", F.dropout_backward)):
        if kind in kinds:
            backward(x, x)
    if "bn" in kinds:  # the backward passes only: the eval-mode check of the model ran the (shared) forward kernels
        running_mean, running_var, scale, shift = (np.zeros(2, dtype), np.ones(2, dtype), np.ones(2, dtype),
                                                   np.zeros(2, dtype))
        stats = (np.zeros(2, dtype), np.ones(2, dtype))  # (mean, invstd), as the training forward returns them
        F.batch_norm_backward(x, x, running_mean, running_var, scale, shift, training=True, stats=stats)
        # a batch norm before a ReLU, or closing a residual block
        F.batch_norm_relu_backward(x, np.abs(x), x, running_mean, running_var, scale, shift, training=True,
                                   stats=stats)
    if "fc" in kinds:
        F.linear_backward(np.ones((2, 3), dtype), x.reshape(2, -1), rng.standard_normal((3, 72)).astype(dtype))
    if "fc relu" in kinds:  # a fully connected layer followed by a ReLU (nn.Linear.fuses_with): its one mask
        from .kernels.cpu import fused  # (the products are fc's)
        fused.relu_mask_bias(np.ones((2, 3), dtype), np.ones((2, 3), dtype), np.empty((2, 3), dtype),
                             np.empty(3, dtype))


def compile_batch_assembly(dtype=np.float32):
    """Run the training batches' assembly (shift, flip, normalise) once, on a tiny array."""
    from .data.batch import shifted_batch
    shifted_batch(np.zeros((1, 2, 2), np.uint8), np.zeros(1, np.int64), np.zeros((1, 2), np.int64), 0, 0.0, 1.0,
                  dtype)


def compile_step(config, dtype=np.float32, batch_assembly=True):
    """Run the loss and the optimizer update of `config` once, on tiny arrays, and with `batch_assembly`
    the batch assembly."""
    from . import functional as F
    from .nn.module import Parameter
    from .train import make_optimizer
    if batch_assembly:
        compile_batch_assembly(dtype)
    F.softmax_cross_entropy(np.zeros((2, 3), dtype), np.zeros(2, np.int64))
    parameter = Parameter(np.zeros(4, dtype))
    parameter.grad = np.zeros(4, dtype)
    make_optimizer(config, [parameter]).step()


def _become_helper():
    """This process only compiles: the parts of a parallel kernel call run on this thread (no kernel threads
    to start, and no spin-wait to compile: the main process compiles that one, for its own threads)."""
    from .kernels.cpu import threads
    threads.run_parts_on_caller()


if __name__ == "__main__":
    from . import startup  # like the app that starts it, this process runs only nbconv's kernels
    startup.skip_numba_optional_imports()
    startup.skip_numba_scipy_blas()
    startup.skip_numba_extensions()
    startup.skip_numba_refresh_on_cache_load()
    _become_helper()
    warm_up(sys.argv[1], tuple(int(size) for size in sys.argv[2].split("x")), *sys.argv[3:4])
