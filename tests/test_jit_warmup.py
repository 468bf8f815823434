"""The cold-cache compile helper of `nbconv train`: it compiles what the convolution plan will run."""
import glob
import os
import subprocess
import sys

import numpy as np
import pytest

from nbconv import architectures, jit_warmup, models
from nbconv.model_plans import layer_plans
from nbconv.kernels.cpu.conv import dispatch
from nbconv.kernels.cpu.conv.plan import ALGORITHMS, PASSES, plan

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL_INPUTS = {"lenet5": (1, 28, 28), "lenet1": (1, 28, 28), "alexnet": (3, 64, 64)}  # others: 3x32x32
NAMED = sorted(models.MODELS) + sorted(architectures.ARCHITECTURES)


def _dispatched_in_one_step(model, input_shape, monkeypatch):
    """(pass, algorithm, dtype name) of every convolution kernel one training step runs, recorded from the
    public kernels' calls to the plan."""
    seen = set()

    def recording(pass_, *args, **options):
        chosen = plan(pass_, *args, **options)
        seen.add((pass_, chosen.algorithm, np.dtype(options["dtype"]).name))
        return chosen
    monkeypatch.setattr(dispatch, "plan", recording)
    x = np.random.default_rng(0).standard_normal((2,) + input_shape).astype(np.float32)
    model.train()
    logits = model.forward(x)
    model.backward(np.full(logits.shape, 0.5, np.float32), need_input_grad=False)
    return sorted(seen)


@pytest.mark.parametrize("name", NAMED)
def test_warm_up_compiles_exactly_what_a_training_step_runs(name, monkeypatch):
    input_shape = SMALL_INPUTS.get(name, (3, 32, 32))
    model = models.build(name if name in models.MODELS else f"{name}:classes=10", input_shape=input_shape)
    planned = jit_warmup.convolution_kernels(model, input_shape)
    assert planned == _dispatched_in_one_step(model, input_shape, monkeypatch)


def test_convolutions_reading_the_input_skip_their_input_gradient():
    model = models.build("res[conv4k3p1,relu,conv4k3p1|conv4k1],conv8k3s2,relu,gap,fc2", input_shape=(4, 9, 9))
    passes = [(entry.path, entry.plan.pass_) for entry in layer_plans(model, (4, 9, 9))]
    assert passes == [
        ("res1.conv1", "forward"), ("res1.conv1", "backward_weight"),   # reads the input: no input gradient
        ("res1.conv2", "forward"), ("res1.conv2", "backward_weight"), ("res1.conv2", "backward_input"),
        ("res1.shortcut.conv1", "forward"), ("res1.shortcut.conv1", "backward_weight"),  # reads the input too
        ("conv1", "forward"), ("conv1", "backward_weight"), ("conv1", "backward_input"),
    ]


def test_every_planned_kernel_compiles_and_runs_on_tiny_arrays():
    not_applicable = {("winograd", "backward_weight"), ("winograd4", "backward_weight"), ("flat", "backward_input"),
                      ("winograd_weight", "forward"), ("winograd_weight", "backward_input"),
                      ("winograd4_weight", "forward"), ("winograd4_weight", "backward_input"), ("packed", "backward_input"),
                      ("packed", "backward_weight"), ("packed_windows", "backward_input"),
                      ("packed_windows", "backward_weight"), ("row_lanes", "forward"),
                      ("row_lanes", "backward_weight"), ("pointwise_weight", "forward"),
                      ("pointwise_weight", "backward_input"),
                      ("pointwise_tiles", "backward_weight")}  # each of these passes is another algorithm's
    kernels = [(pass_, name, "float32") for name in ALGORITHMS for pass_ in PASSES
               if (name, pass_) not in not_applicable]
    jit_warmup.compile_convolutions(kernels)  # each one forced through the plan: a ValueError if it did not apply


@pytest.mark.parametrize("spec,input_shape,kinds", [
    ("lenet5", (1, 28, 28), ["fc", "fc relu", "maxpool", "relu"]),
    ("lenet1", (1, 28, 28), ["avgpool", "fc", "tanh"]),
    ("resnet20", (3, 32, 32), ["bn", "fc", "gap", "relu"]),
    ("conv8k1,sigmoid,dropout0.5,local4k3,lrelu0.1,gap,fc10", (2, 7, 7), ["dropout", "fc", "gap", "local", "lrelu",
                                                                         "sigmoid"]),
])
def test_layer_kinds_name_the_other_backward_kernels(spec, input_shape, kinds):
    assert jit_warmup.layer_kinds(models.build(spec, input_shape=input_shape)) == kinds


@pytest.mark.parametrize("spec,input_shape,needed", [
    ("resnet20", (3, 32, 32), False),  # every convolution without bias
    ("lenet5", (1, 28, 28), True),
    ("conv1d4k3,flatten,fc2", (2, 9), True),  # a Conv1d always returns its bias gradient
])
def test_the_bias_gradient_kernel_is_compiled_only_for_convolutions_with_bias(spec, input_shape, needed):
    assert jit_warmup.needs_bias_gradient(models.build(spec, input_shape=input_shape)) == needed


def test_no_helper_on_the_gpu_and_a_bad_spec_ends_the_helper(monkeypatch):
    monkeypatch.setattr(jit_warmup, "cache_is_cold", lambda: True)
    assert jit_warmup.start("lenet5", device="cuda") is None
    helper = jit_warmup.start("conv8k3,nonsense", device="cpu")
    assert helper.wait(timeout=600) != 0  # the main process reports the spec
    assert os.path.isdir(helper.claims) and helper.input_shape == (1, 28, 28)
    jit_warmup.wait(helper)
    assert not os.path.exists(helper.claims)  # the claims folder goes with the helper
    jit_warmup.wait(None)
    jit_warmup.stop(None)


def test_helper_fills_the_shared_cache(tmp_path):
    """Run with an empty cache, the helper leaves the kernels it compiled in Numba's cache on disk."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "NUMBA_ENABLE_CUDASIM": "0"}
    result = subprocess.run([sys.executable, "-m", "nbconv.jit_warmup", "maxpool2,flatten,fc10", "1x6x6"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert glob.glob(os.path.join(str(tmp_path), "**", "*max_pool2d_backward*.nbi"), recursive=True)
    cold = subprocess.run([sys.executable, "-c", "from nbconv import jit_warmup; print(jit_warmup.cache_is_cold())"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert cold.stdout.strip() == "True"  # the convolution kernels are still uncompiled there



@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the helper is forked on Linux only")
def test_a_forked_helper_fills_the_shared_cache_and_compiles_no_spin_wait(tmp_path):
    """On Linux start() forks this process: the child compiles its jobs into the cache on disk and exits 0,
    running its kernels' parts on its own thread (no kernel threads, so no spin-wait compiled but by the
    spin-wait's own job, which the parent claims here, as a main process that is done first does); the parent
    gets a ForkedHelper whose wait returns the exit status. Its model has no fully connected layer before a
    ReLU, so nothing compiles the fused pair's mask."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "NUMBA_ENABLE_CUDASIM": "0", "NUMBA_NUM_THREADS": "2"}
    script = ("from nbconv import jit_warmup; helper = jit_warmup.start('conv4k3,relu,maxpool2,flatten,fc10', "
              "input_shape=(1, 12, 12)); assert jit_warmup.claim(helper.claims, ('spin wait', None)); "
              "print(type(helper).__name__, helper.wait(timeout=600)); "
              "jit_warmup.wait(helper)")  # a convolution whose backward passes would run on two threads
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["ForkedHelper", "0"]
    cached = glob.glob(os.path.join(str(tmp_path), "**", "*.nbi"), recursive=True)
    for kernel in ("backward_weight", "max_pool2d_backward", "linear_bias_sums", "_shifted_batch"):
        assert [name for name in cached if kernel in name], kernel
    assert not [name for name in cached if "spin.reached" in name]
    assert not [name for name in cached if "relu_mask_bias" in name]  # no fully connected layer before a ReLU


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_helper_is_stopped_and_reaped(monkeypatch):
    monkeypatch.setattr(jit_warmup, "can_fork", lambda: True)  # whatever threads other tests left: the child
    monkeypatch.setattr(jit_warmup, "cache_is_cold", lambda: True)  # only sleeps
    monkeypatch.setattr(jit_warmup, "warm_up", lambda *args: __import__("time").sleep(60))
    helper = jit_warmup.start("lenet5")
    assert isinstance(helper, jit_warmup.ForkedHelper) and helper.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        helper.wait(timeout=0.05)
    jit_warmup.stop(helper)
    assert helper.returncode == -9 and not os.path.exists(helper.claims)
    with pytest.raises(ChildProcessError):
        os.waitpid(helper.pid, os.WNOHANG)  # reaped


def test_an_empty_cache_is_seen_from_file_names_alone(tmp_path):
    """cache_is_empty (no kernel module imported) and cache_is_cold agree on an empty cache and after one of the
    kernels they look at is compiled into it."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "NUMBA_ENABLE_CUDASIM": "0"}
    script = ("import sys; from nbconv import jit_warmup; empty = jit_warmup.cache_is_empty(); "
              "imported = 'nbconv.kernels.cpu.conv.lanes' in sys.modules; print(empty, imported, "
              "jit_warmup.cache_is_cold()); sys.argv[1:] and jit_warmup.compile_convolutions("
              "[('backward_weight', 'lanes', 'float32')], bias=False)")
    runs = [subprocess.run([sys.executable, "-c", script, *extra], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=600) for extra in (["compile"], [])]
    assert [run.returncode for run in runs] == [0, 0], runs[-1].stderr[-2000:]
    assert runs[0].stdout.split() == ["True", "False", "True"]   # empty, found without importing lanes
    assert runs[1].stdout.split() == ["False", "False", "False"]  # lanes' weight gradient is in it now


def test_the_helper_is_spawned_instead_of_forked_beside_other_threads_or_mpi(monkeypatch):
    import threading
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delitem(sys.modules, "mpi4py.MPI", raising=False)
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    assert jit_warmup.can_fork() == hasattr(os, "fork")
    monkeypatch.setattr(threading, "active_count", lambda: 2)  # e.g. a data-loading thread, kernel threads
    assert not jit_warmup.can_fork()
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", object())
    assert not jit_warmup.can_fork()
    monkeypatch.delitem(sys.modules, "mpi4py.MPI")
    monkeypatch.setattr(sys, "platform", "darwin")
    assert not jit_warmup.can_fork()


def test_a_fully_connected_layer_before_a_relu_is_two_jobs_and_its_relu_mask_compiles_as_a_step_runs_it():
    """fc's backward products and its fused ReLU's mask are separate jobs (the two processes end closer
    together), and the mask's job compiles the overload a LeNet-5 step runs."""
    from nbconv.kernels.cpu import fused
    model = models.build("lenet5", input_shape=(1, 28, 28))
    jobs = jit_warmup.helper_jobs(model, (1, 28, 28))
    assert ("backward", "fc") in jobs and ("backward", "fc relu") in jobs and ("backward", "maxpool") in jobs
    jit_warmup.compile_backward(["fc relu"])
    signatures = set(fused.relu_mask_bias.signatures)
    model.train()
    logits = model.forward(np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32))
    model.backward(np.full(logits.shape, 0.5, np.float32), need_input_grad=False)
    assert signatures and set(fused.relu_mask_bias.signatures) == signatures


def test_a_fully_connected_layer_without_a_relu_after_it_has_no_mask_job():
    jobs = jit_warmup.helper_jobs(models.build("resnet20", input_shape=(3, 32, 32)), (3, 32, 32))
    assert ("backward", "fc") in jobs and ("backward", "fc relu") not in jobs


def test_the_helper_compiles_lanes_input_gradient_first_and_gemm_weight_gradient_last():
    model = models.build("resnet20", input_shape=(3, 32, 32))
    backward = [kernel for kernel in jit_warmup.convolution_kernels(model, (3, 32, 32)) if kernel[0] != "forward"]
    first, last = jit_warmup.helper_order(backward)
    assert sorted(first + last) == sorted(backward)  # each kernel once
    assert first[0] == ("backward_input", "lanes", "float32")  # its row helper, before the main process needs it
    assert last == []  # the shortcuts run 'subsampled', which compiles nothing: no gemm
    assert {kernel[1] for kernel in backward} == {"lanes", "subsampled"}
    subsampled = [kernel for kernel in backward if kernel[1] == "subsampled"]
    gemm = [(pass_, "gemm", dtype) for pass_, _, dtype in subsampled]
    assert jit_warmup.helper_order(backward + gemm)[1] == [("backward_weight", "gemm", "float32")]  # after the
    # main process's gemm forward, in a model that runs gemm


def test_the_helper_starts_apart_from_the_row_helpers_of_the_main_process_s_first_forward():
    """ResNet-20's first layer runs lanes, whose forward compiles the row helpers of lanes' backward passes:
    the helper starts with the batch assembly and batch norm's backward pass. LeNet-5's runs flat: the helper
    starts with a convolution. Either list ends with the kernel threads' wait, which spin.reached's job
    compiles."""
    resnet = jit_warmup.helper_jobs(models.build("resnet20", input_shape=(3, 32, 32)), (3, 32, 32))
    assert resnet[:3] == [("batch assembly", None), ("backward", "bn"),
                          ("convolution", ("backward_input", "lanes", "float32"))]
    assert len(resnet) == len(set(resnet)) and resnet[-1] == ("spin wait", None)
    lenet = jit_warmup.helper_jobs(models.build("lenet5", input_shape=(1, 28, 28)), (1, 28, 28))
    assert lenet[0][0] == "convolution" and lenet[-1] == ("spin wait", None)
    assert len(lenet) == len(set(lenet)) and lenet.count(("batch assembly", None)) == 1


def test_the_spin_wait_job_compiles_the_kernel_threads_wait(monkeypatch):
    from nbconv.kernels.cpu import threads
    calls = []
    monkeypatch.setattr(threads, "compile_wait", lambda: calls.append("compile_wait"))
    jit_warmup.run_job(("spin wait", None), None, {})
    assert calls == ["compile_wait"]


def test_the_helper_has_no_job_for_an_algorithm_with_nothing_to_compile():
    model = models.build("resnet20", input_shape=(3, 32, 32))
    jobs = jit_warmup.helper_jobs(model, (3, 32, 32))
    assert [job for job in jobs if job[0] == "convolution"] == [
        ("convolution", ("backward_input", "lanes", "float32")), ("convolution", ("backward_weight", "lanes", "float32"))]


def test_strips_compiles_one_im2col_for_padded_and_unpadded_inputs():
    """Both branches of strips' unroll_task call im2col_strips with int64 arguments (a literal 0 would be a
    second overload to compile)."""
    import numba
    from nbconv.kernels.cpu.conv import strips
    arrays = [numba.typeof(np.zeros((1,) * ndim, np.float32)) for ndim in (4, 1, 2)]  # input, slab, col
    fresh = numba.njit(strips.unroll_task.py_func)  # typed here, not loaded whole from the cache with its callees
    fresh.compile(tuple(arrays) + (numba.int64,) * 10)
    float32 = [signature for signature in strips.im2col_strips.signatures if tuple(signature[:2]) == tuple(arrays[1:])]
    assert len(float32) == 1, float32  # other tests may have compiled other dtypes and layouts


def test_the_helper_compiles_batch_norm_backward_as_a_training_step_runs_it():
    """The helper's batch norm backward passes (with given statistics) are the overloads a step compiles."""
    from nbconv.kernels.cpu import batch_norm  # its backward kernel serves batch_norm_relu's too
    jit_warmup.compile_backward(["bn"])
    compiled = {kernel: set(kernel.signatures) for kernel in (batch_norm.batch_norm_backward_span,)}
    model = models.build("resnet20", input_shape=(3, 8, 8))
    model.train()
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    logits = model.forward(x)
    model.backward(np.full(logits.shape, 0.5, np.float32), need_input_grad=False)
    for kernel, signatures in compiled.items():
        assert signatures and set(kernel.signatures) == signatures, kernel


def _helper_work(spec, input_shape, monkeypatch):
    """What warm_up compiles for a spec, recorded instead of compiled: [(step, what)]."""
    done = []
    monkeypatch.setattr(jit_warmup, "compile_convolutions",
                        lambda kernels, **options: done.extend(("convolution", kernel) for kernel in kernels))
    monkeypatch.setattr(jit_warmup, "compile_backward", lambda kinds: done.extend(("backward", kind) for kind in kinds))
    monkeypatch.setattr(jit_warmup, "compile_batch_assembly", lambda: done.append(("batch assembly", None)))
    jit_warmup.warm_up(spec, input_shape)
    return done


def test_the_helper_compiles_the_algorithms_the_plan_chooses(monkeypatch):
    """The helper asks the plan: when the plan's choice changes, so do the kernels it compiles."""
    from nbconv.kernels.cpu.conv import plan as conv_plan
    chosen = {kernel[1] for step, kernel in _helper_work("resnet20", (3, 32, 32), monkeypatch) if step == "convolution"}
    assert chosen == {"lanes"}  # the shortcuts run 'subsampled', with nothing to compile
    conv_plan.forget_plans()
    try:
        monkeypatch.setattr(conv_plan, "choose", lambda pass_, convolution, dtype: "gemm")
        work = _helper_work("resnet20", (3, 32, 32), monkeypatch)
    finally:
        conv_plan.forget_plans()
    assert [kernel for step, kernel in work if step == "convolution"] == [
        ("backward_input", "gemm", "float32"), ("backward_weight", "gemm", "float32")]


@pytest.mark.parametrize("name", ["resnet20", "lenet5", "googlenet", "vgg11_bn"])
def test_the_helper_compiles_each_kernel_on_a_convolution_the_plan_gives_it(name):
    input_shape = SMALL_INPUTS.get(name, (3, 32, 32))
    model = models.build(name if name in models.MODELS else f"{name}:classes=10", input_shape=input_shape)
    examples = jit_warmup.kernel_examples(model, input_shape)
    assert sorted(examples) == jit_warmup.convolution_kernels(model, input_shape)
    for (pass_, algorithm, dtype), convolution in examples.items():
        assert convolution.input_shape[0] == 1
        assert plan(pass_, convolution.input_shape, convolution.weight_shape, *convolution.hyper,
                    dtype=dtype).algorithm == algorithm


def test_the_helper_runs_a_large_layer_cut_down_and_a_small_one_whole():
    from nbconv.kernels.cpu.conv.plan import Convolution
    large = Convolution((1, 64, 226, 226), (64, 64, 3, 3), 1, 1, 0, 0, 1, 1, 1)  # VGG's first block, padded
    chosen = jit_warmup._example_plan("backward_input", "shift", "float32", large)
    assert chosen.algorithm == "shift" and chosen.convolution.input_shape == (1, 64, 16, 16)
    tiny = Convolution((1, 2, 5, 5), (2, 2, 3, 3), 1, 1, 1, 1, 1, 1, 1)
    assert jit_warmup._example_plan("forward", "gemm", "float32", tiny).convolution == tiny
    with pytest.raises(ValueError):  # an algorithm that does not apply even to the whole layer
        jit_warmup._example_plan("backward_weight", "winograd", "float32", large)


def test_the_helper_compiles_the_batch_assembly_and_the_main_process_does_not(monkeypatch):
    from nbconv.data import batch
    from nbconv.train import TrainConfig
    work = _helper_work("resnet20", (3, 32, 32), monkeypatch)
    assert ("batch assembly", None) in work
    assert work.index(("batch assembly", None)) < work.index(("backward", "bn"))  # before the main process needs it
    monkeypatch.undo()
    assembled = []
    monkeypatch.setattr(batch, "shifted_batch", lambda *args, **kwargs: assembled.append(args))
    finished = []

    class Helper:
        def wait(self, timeout):
            finished.append(timeout)
    jit_warmup.finish(Helper(), TrainConfig(model="resnet20"), models.build("resnet20", input_shape=(3, 8, 8)))
    assert finished and not assembled
    jit_warmup.compile_step(TrainConfig(model="resnet20"))  # without a helper, the batch assembly too
    assert len(assembled) == 1


def test_a_convolution_checks_its_output_with_one_overload_of_all_finite(monkeypatch):
    """The finiteness checks after a convolution pass 4-D arrays only (a 1-D one would compile a second
    overload of all_finite on a cold cache)."""
    from nbconv import functional as F
    from nbconv.kernels.cpu.conv import dispatch as conv_dispatch
    shapes = []
    check = conv_dispatch.all_finite

    def recording(first, second):
        shapes.append((first.ndim, second.ndim))
        return check(first, second)
    monkeypatch.setattr(conv_dispatch, "all_finite", recording)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 7, 7)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    grad_input, grad_weight, _ = F.conv2d_backward(np.ones((2, 4, 5, 5), np.float32), x, w)
    F.conv2d(x, w)
    assert shapes and set(shapes) == {(4, 4)}


def test_every_compiled_cpu_kernel_leaves_out_the_c_callback_wrapper():
    """Numba builds a C-callable wrapper beside every overload unless told not to; nbconv never calls its
    kernels through one, and leaving it out saves compiling it (and its machine code) on a cold cache."""
    import importlib
    import pkgutil
    from numba.core.registry import CPUDispatcher
    import nbconv.kernels.cpu as cpu_kernels
    names = [info.name for info in pkgutil.walk_packages(cpu_kernels.__path__, "nbconv.kernels.cpu.")]
    found, missing = 0, []
    for name in names + ["nbconv.data.batch"]:
        for attribute, value in vars(importlib.import_module(name)).items():
            if isinstance(value, CPUDispatcher) and value.py_func.__module__ == name:
                if value.targetoptions.get("inline", "never") == "always":
                    continue  # compiled into its callers, never on its own
                found += 1
                if not value.targetoptions.get("no_cfunc_wrapper"):
                    missing.append(f"{name}.{attribute}")
    assert found > 50 and not missing, missing


def _backward_convolution_overloads():
    """{kernel name: set of compiled signatures} of the CPU convolutions' backward span kernels."""
    import importlib
    import pkgutil
    from numba.core.registry import CPUDispatcher
    import nbconv.kernels.cpu.conv as conv_kernels
    found = {}
    for info in pkgutil.iter_modules(conv_kernels.__path__, "nbconv.kernels.cpu.conv."):
        for name, value in vars(importlib.import_module(info.name)).items():
            if isinstance(value, CPUDispatcher) and "backward" in name and name.endswith("_span"):
                found[f"{info.name}.{name}"] = set(value.signatures)
    return found


@pytest.mark.parametrize("input_shape", [(3, 12, 12), (3, 40, 40)])  # the layers whole, and cut to 16 x 16
def test_after_the_warm_up_a_training_step_compiles_no_backward_convolution_of_its_own(input_shape):
    """The helper's work, done in this process, leaves nothing of the convolutions' backward passes for a
    training step to compile (types and code paths: its example convolutions are the model's own layers)."""
    spec = "conv8k3p1,relu,conv16k3s2p1,relu,conv16k3p1,relu,conv16k1,gap,fc10"
    jit_warmup.warm_up(spec, input_shape)
    before = _backward_convolution_overloads()
    model = models.build(spec, input_shape=input_shape)
    model.train()
    x = np.random.default_rng(0).standard_normal((2,) + input_shape).astype(np.float32)
    logits = model.forward(x)
    model.backward(np.full(logits.shape, 0.5, np.float32), need_input_grad=False)
    after = _backward_convolution_overloads()
    assert {name: after[name] - before[name] for name in after if after[name] - before[name]} == {}


def test_a_job_goes_to_the_first_process_that_claims_it(tmp_path):
    job, other = ("convolution", ("backward_weight", "gemm", "float32")), ("batch assembly", None)
    assert jit_warmup.claim(str(tmp_path), job) and not jit_warmup.claim(str(tmp_path), job)
    assert jit_warmup.claim(str(tmp_path), other) and not jit_warmup.claim(str(tmp_path), other)
    assert jit_warmup.claim(None, job) and jit_warmup.claim(None, job)  # no folder: no one to share with
    assert not jit_warmup.claim(str(tmp_path / "gone"), ("backward", "bn"))  # the main process is done


class _RunningHelper:
    def __init__(self, claims, input_shape):
        self.claims, self.input_shape, self.waited = claims, input_shape, False

    def poll(self):
        return None

    def wait(self, timeout=None):
        self.waited = True


def test_the_main_process_takes_the_jobs_the_helper_has_not_claimed_from_the_last_back(tmp_path, monkeypatch):
    from nbconv.train import TrainConfig
    model = models.build("resnet20", input_shape=(3, 32, 32))
    jobs = jit_warmup.helper_jobs(model, (3, 32, 32))
    assert len(jobs) == len(set(jobs)) and jobs[-1] == ("spin wait", None)
    claims = tmp_path / "claims"
    claims.mkdir()
    for job in jobs[:4]:  # what the helper has claimed by the time the main process is done with its own part
        assert jit_warmup.claim(str(claims), job)
    taken = []
    monkeypatch.setattr(jit_warmup, "run_job", lambda job, *args: taken.append(job))
    monkeypatch.setattr(jit_warmup, "compile_backward", lambda kinds: None)
    monkeypatch.setattr(jit_warmup, "compile_step", lambda config, batch_assembly=True: None)
    helper = _RunningHelper(str(claims), (3, 32, 32))
    jit_warmup.finish(helper, TrainConfig(model="resnet20"), model)
    assert taken == jobs[4:][::-1] and helper.waited and not claims.exists()


def test_helper_and_main_process_share_the_jobs_each_done_once(tmp_path, monkeypatch):
    """warm_up with a claims folder does the jobs nobody has claimed: with the main process taking the last
    two, the helper does the others, in its order."""
    model = models.build("resnet20", input_shape=(3, 32, 32))
    jobs = jit_warmup.helper_jobs(model, (3, 32, 32))
    for job in jobs[-2:]:
        jit_warmup.claim(str(tmp_path), job)
    done = []
    monkeypatch.setattr(jit_warmup, "run_job", lambda job, *args: done.append(job))
    jit_warmup.warm_up("resnet20", (3, 32, 32), str(tmp_path))
    assert done == jobs[:-2]
