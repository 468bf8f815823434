"""Data-parallel training (nbconv.distributed): sharding rules here; K-invariance, faults, Ctrl-C and resume
with another number of processes by running mpiexec (skipped where mpi4py or mpiexec is missing)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from nbconv import checkpoint, distributed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "nbconv", "data", "sample")  # the 3,000 + 1,000 MNIST images shipped in the package
STEPS_SCRIPT = os.path.join(ROOT, "tests", "distributed_steps.py")


def find_mpiexec():
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")  # the mpich wheel's, in the venv
    return beside if os.access(beside, os.X_OK) else shutil.which("mpiexec")


def mpi_missing():
    library, reason = distributed.mpi_library()
    if library is None:
        return f"MPI unavailable: {reason}"
    if find_mpiexec() is None:
        return "no mpiexec found"
    return None


needs_mpi = pytest.mark.skipif(mpi_missing() is not None, reason=str(mpi_missing()))


def mpiexec(k):
    """mpiexec -n k, oversubscribing (more processes than cores is fine for a test)."""
    command = [find_mpiexec(), "-n", str(k)]
    version = subprocess.run([command[0], "--version"], capture_output=True, text=True).stdout
    if "Open MPI" in version or "OpenRTE" in version:
        command[1:1] = ["--oversubscribe"] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])
    return command


def environment():
    env = dict(os.environ, NUMBA_NUM_THREADS="1", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("NBCONV_DATA_DIR", None)
    return env


def run_steps(tmp_path, k, *options, timeout=400):
    """Per-step losses of one epoch, single-process (k=None) or on k MPI processes."""
    out = str(tmp_path / f"steps-{k}-{len(options)}.json")
    launcher = [sys.executable] if k is None else mpiexec(k) + [sys.executable]
    extra = ["--single"] if k is None else []
    result = subprocess.run(launcher + [STEPS_SCRIPT, SAMPLE, out, *extra, *options], capture_output=True,
                            text=True, timeout=timeout, env=environment())
    assert result.returncode == 0, result.stdout + result.stderr
    with open(out) as handle:
        return json.load(handle)


def nbconv_command(k, *args):
    launcher = [sys.executable] if k is None else mpiexec(k) + [sys.executable]
    return launcher + ["-m", "nbconv", "train", *args, "--data-dir", SAMPLE, "--device", "cpu"]


def test_shards_cover_the_batch_in_order_and_differ_by_at_most_one():
    for count in (0, 1, 2, 7, 64, 65, 1001):
        for size in (1, 2, 3, 4, 7, 16):
            bounds = [distributed.shard_bounds(count, rank, size) for rank in range(size)]
            assert bounds[0][0] == 0 and bounds[-1][1] == count
            assert all(bounds[r][1] == bounds[r + 1][0] for r in range(size - 1))
            sizes = [stop - start for start, stop in bounds]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_single_process_world_changes_nothing():
    items = np.arange(10)
    assert distributed.SINGLE.shard(items) is items
    assert distributed.SINGLE.step_totals(3.5, 2) == (3.5, 2) and not distributed.SINGLE.distributed
    assert distributed.connect() is distributed.SINGLE or distributed.launched_size() > 1


def test_connect_explains_a_missing_mpi4py(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(distributed.DistributedUnavailableError, match="mpi4py"):
        distributed.MPIWorld()


@needs_mpi
def test_the_loss_curve_does_not_depend_on_the_number_of_processes(tmp_path):
    """LeNet-5, batch 58, 51 steps (shards of 15, 15, 14, 14 on 4 processes), the last one a batch of 2
    (1, 1, 0, 0: two processes without images contribute zeros)."""
    options = ["--model", "lenet5", "--batch-size", "58", "--limit", "2902"]
    single = run_steps(tmp_path, None, *options)
    assert len(single["losses"]) == 51
    reference = np.array(single["losses"])
    for k in (2, 4):
        result = run_steps(tmp_path, k, *options)
        assert result["size"] == k and result["weights_agree"]
        np.testing.assert_allclose(result["losses"], reference, rtol=1e-4)
    assert reference[-1] < reference[0] / 2  # it trained


@needs_mpi
def test_blocking_and_small_buckets_reduce_to_the_same_bits(tmp_path):
    """Bucketing and overlap change when reductions run, never what they sum (2 processes: a + b exactly)."""
    overlapped = run_steps(tmp_path, 2, "--limit", "600")
    blocking = run_steps(tmp_path, 2, "--limit", "600", "--no-overlap", "--bucket-bytes", "512")
    assert overlapped["losses"] == blocking["losses"] and overlapped["fc_weight_sum"] == blocking["fc_weight_sum"]


def test_weighted_shards_cover_the_batch_in_order_and_follow_the_shares():
    for count in (0, 1, 2, 7, 58, 64, 1001):
        for shares in ([0.5, 0.5], [0.3, 0.7], [0.25] * 4, [0.6, 0.1, 0.3], [0.999, 0.001], [1 / 3] * 3):
            bounds = [distributed.weighted_shard_bounds(count, rank, np.array(shares)) for rank in range(len(shares))]
            assert bounds[0][0] == 0 and bounds[-1][1] == count
            assert all(bounds[r][1] == bounds[r + 1][0] for r in range(len(shares) - 1))
            assert all(start <= stop for start, stop in bounds)
            sizes = np.array([stop - start for start, stop in bounds])
            assert np.abs(sizes - np.array(shares) * count).max() <= 1  # each within one image of its share
    assert distributed.weighted_shard_bounds(64, 1, np.array([0.5, 0.5])) == distributed.shard_bounds(64, 1, 2)


@needs_mpi
def test_balancing_gives_a_slower_process_fewer_images_and_keeps_the_loss_curve(tmp_path):
    """Rank 1 sleeps 20 ms a step: balancing by speed moves images to rank 0, and the loss curve stays the
    single process's (uneven shards weigh by their size), with every process holding the same weights."""
    options = ["--model", "lenet5", "--batch-size", "58", "--limit", "2902"]
    single = run_steps(tmp_path, None, *options)
    balanced = run_steps(tmp_path, 2, *options, "--balance-every", "2", "--slow-rank", "1")
    assert balanced["weights_agree"]
    np.testing.assert_allclose(balanced["losses"], single["losses"], rtol=1e-4)
    assert balanced["root_shards"][0] == 29 and max(balanced["root_shards"][-10:]) > 40


def test_balance_is_off_unless_asked(monkeypatch):
    monkeypatch.delenv("NBCONV_MPI_BALANCE", raising=False)
    assert distributed.balance_requested() is False
    monkeypatch.setenv("NBCONV_MPI_BALANCE", "1")
    assert distributed.balance_requested() is True
    monkeypatch.setenv("NBCONV_MPI_BALANCE", "yes")
    with pytest.raises(ValueError, match="NBCONV_MPI_BALANCE"):
        distributed.balance_requested()
    import click
    from nbconv_cli.train import connect_world
    monkeypatch.setenv("PMI_SIZE", "2")  # as under mpiexec: the setting is read before MPI starts
    with pytest.raises(click.ClickException, match="NBCONV_MPI_BALANCE='yes': expected 0 or 1"):
        connect_world(False)


def test_overlap_follows_the_environment_or_is_left_to_the_world(monkeypatch):
    monkeypatch.delenv("NBCONV_MPI_OVERLAP", raising=False)
    assert distributed.overlap_requested() is None
    for value, expected in (("auto", None), ("1", True), ("0", False)):
        monkeypatch.setenv("NBCONV_MPI_OVERLAP", value)
        assert distributed.overlap_requested() is expected
    monkeypatch.setenv("NBCONV_MPI_OVERLAP", "on")
    with pytest.raises(ValueError, match="NBCONV_MPI_OVERLAP='on': expected 0, 1 or auto"):
        distributed.overlap_requested()


@needs_mpi
def test_overlap_is_on_across_nodes_only():
    """One node (every process shares memory): blocking reductions unless asked; an explicit choice wins."""
    from mpi4py import MPI
    world = distributed.MPIWorld(comm=MPI.COMM_SELF)
    assert world.nodes == 1 and world.overlap is False
    assert distributed.MPIWorld(comm=MPI.COMM_SELF, overlap=True).overlap is True


@needs_mpi
@pytest.mark.parametrize("chosen", [None, "1"])
def test_mpich_reads_no_peer_memory_unless_the_user_asks(chosen):
    """A killed peer makes MPICH's cross-memory read fail fatally, before the peer watch can name the rank;
    the world starts MPI without it, and keeps a setting the user made."""
    env = environment()
    env.pop("MPIR_CVAR_CH4_CMA_ENABLE", None)
    if chosen is not None:
        env["MPIR_CVAR_CH4_CMA_ENABLE"] = chosen
    script = ("import os; from nbconv import distributed; world = distributed.connect(force=True); "
              "print('CMA', os.environ.get('MPIR_CVAR_CH4_CMA_ENABLE'))")
    result = subprocess.run(mpiexec(1) + [sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"CMA {chosen or '0'}" in result.stdout


def test_mpich_settings_fill_in_whole_groups_the_user_left_unset():
    """Each group of MPICH settings goes in only where the environment sets none of its variables: a user's
    cell size alone keeps MPICH's own cell count and pack buffers, which must fit that cell size."""
    cells, count, pack = ("MPIR_CVAR_CH4_SHM_POSIX_IQUEUE_CELL_SIZE", "MPIR_CVAR_CH4_SHM_POSIX_IQUEUE_NUM_CELLS",
                          "MPIR_CVAR_CH4_PACK_BUFFER_SIZE")
    untouched = {"PATH": "/bin"}
    distributed.apply_mpich_settings(untouched)
    assert untouched == {"PATH": "/bin", "MPIR_CVAR_CH4_CMA_ENABLE": "0", cells: "65536", count: "8", pack: "65536"}
    chosen = {cells: "131072", "MPIR_CVAR_CH4_CMA_ENABLE": "1"}
    distributed.apply_mpich_settings(chosen)
    assert chosen == {cells: "131072", "MPIR_CVAR_CH4_CMA_ENABLE": "1"}
    # the cells' memory stays MPICH's default (64 cells of 8 KB a process)
    assert int(untouched[cells]) * int(untouched[count]) == 64 * 8192 and int(untouched[pack]) >= int(untouched[cells])


@needs_mpi
def test_mpich_starts_with_the_settings_and_reduces_a_megabyte_across_cells():
    """MPICH accepts the settings (a pack buffer smaller than a cell aborts MPI_Init) and a 1 MB Allreduce
    between 2 processes, 16 of the 64 KB cells, sums exactly."""
    script = ("import os, numpy as np; from nbconv import distributed; world = distributed.connect(force=True); "
              "values = np.arange(262_147, dtype=np.float32) * (world.rank + 1); "
              "world.comm.Allreduce(world.MPI.IN_PLACE, values, op=world.MPI.SUM); "
              "assert np.array_equal(values, np.arange(262_147, dtype=np.float32) * 3), 'wrong sums'; "
              "cells = world.comm.gather(os.environ['MPIR_CVAR_CH4_SHM_POSIX_IQUEUE_CELL_SIZE']); "
              "print('cells', *cells) if world.is_root else None")
    env = {key: value for key, value in environment().items() if not key.startswith("MPIR_CVAR_")}
    result = subprocess.run(mpiexec(2) + [sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cells 65536 65536" in result.stdout


@needs_mpi
def test_resume_with_another_number_of_processes(tmp_path):
    """Epoch 1 on 2 processes, epoch 2 resumed on 1: the same history as 2 epochs on 1 process."""
    args = ["lenet5", "--batch-size", "50", "--limit", "450", "--augment", "0", "--seed", "2", "--schedule", "constant"]
    env = environment()
    whole, split = str(tmp_path / "whole.npz"), str(tmp_path / "split.npz")
    for command in (nbconv_command(None, *args, "--epochs", "2", "--out", whole),
                    nbconv_command(2, *args, "--epochs", "1", "--out", split),
                    nbconv_command(None, "--resume", split, "--epochs", "2", "--limit", "450")):
        result = subprocess.run(command, capture_output=True, text=True, timeout=400, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
    assert "2 processes (MPI)" not in result.stdout
    whole_history, split_history = checkpoint.load(whole).history, checkpoint.load(split).history
    assert [h["epoch"] for h in split_history] == [1, 2]
    for key in ("loss", "accuracy", "test_accuracy"):
        np.testing.assert_allclose([h[key] for h in split_history], [h[key] for h in whole_history], rtol=1e-4)


def start_training(tmp_path, k, *args):
    out = str(tmp_path / "run.npz")
    process = subprocess.Popen(nbconv_command(k, "lenet5", "--epochs", "50", "--out", out, *args),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment(),
                               start_new_session=True)
    deadline = time.monotonic() + 300
    while not os.path.exists(out):  # the first epoch's checkpoint
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0]
        time.sleep(0.2)
    return process, out


def rank_process(launcher, rank):
    """The pid of the process of that rank under this mpiexec (a descendant with the rank in its environment)."""
    parents, environments = {}, {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as handle:
                parents[int(pid)] = int(handle.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/environ", "rb") as handle:
                environments[int(pid)] = handle.read().split(b"\0")
        except OSError:
            continue
    for pid, variables in environments.items():
        if f"PMI_RANK={rank}".encode() in variables or f"OMPI_COMM_WORLD_RANK={rank}".encode() in variables:
            ancestor = pid
            while ancestor in parents and ancestor not in (0, 1, launcher.pid):
                ancestor = parents[ancestor]
            if ancestor == launcher.pid:
                return pid
    return None


def finish(process, within):
    try:
        output = process.communicate(timeout=within)[0]
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"the job was still running {within} s later: {process.communicate()[0]}")
    return output


@needs_mpi
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the rank's process through /proc")
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_rank_ends_the_job_and_the_checkpoint_stays_intact(tmp_path, how):
    process, out = start_training(tmp_path, 2, "--limit", "1500")
    victim = rank_process(process, 1)
    assert victim is not None
    os.kill(victim, how)
    started = time.monotonic()
    output = finish(process, within=20)
    assert time.monotonic() - started < 10 and process.returncode != 0
    if how == signal.SIGTERM:
        assert "rank 1 of 2 failed: terminated by SIGTERM" in output
    else:  # the launcher names the process id; the job's first lines say which rank it was
        assert f"rank 1: pid {victim}" in output
        after_start = output.split(f"rank 1: pid {victim}", 1)[1]
        # the launcher may report the kill, or the surviving rank's peer watch names the vanished process first
        assert str(victim) in after_start or f"rank 1 of 2 is gone: its process {victim}" in after_start, after_start
    assert len(checkpoint.load(out).history) >= 1


@needs_mpi
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="tells a zombie from a live process through /proc")
@pytest.mark.parametrize("how", ["barrier", "raises", "in-sum"])
def test_a_vanished_peer_is_named_by_the_rank_that_waits_for_it(tmp_path, how):
    """Rank 0 waits in a barrier for rank 1, whose process (a stand-in) vanishes without the launcher
    knowing: rank 0 itself names rank 1 and ends the job within seconds. With raises, rank 0 fails after the
    peer vanished: its abort names the peer, the likely cause, rather than its own error. in-sum: rank 0
    waits in the gradients' sum in shared memory instead of a barrier."""
    pid_file = str(tmp_path / "stand_in.pid")
    option = {"barrier": [], "raises": ["--raise"], "in-sum": ["--in-sum"]}[how]
    process = subprocess.Popen(mpiexec(2) + [sys.executable, os.path.join(ROOT, "tests", "distributed_watch.py"),
                                             pid_file] + option,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment(),
                               start_new_session=True)
    deadline = time.monotonic() + 120
    while not os.path.exists(pid_file):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0]
        time.sleep(0.1)
    with open(pid_file) as handle:
        stand_in = int(handle.read())
    time.sleep(1.0)  # rank 0 waits in the barrier, its watch armed
    os.kill(stand_in, signal.SIGKILL)
    started = time.monotonic()
    output = finish(process, within=30)
    assert time.monotonic() - started < 10 and process.returncode != 0, output
    lines = [line for line in output.splitlines() if line.startswith("nbconv: ")]
    assert len(lines) == 1 and lines[0].startswith(f"nbconv: rank 1 of 2 is gone: its process {stand_in} on "), output
    assert lines[0].endswith("has ended (killed?); rank 0 ends all 2 processes"), output
    assert "the barrier ended" not in output


@needs_mpi
def test_a_rank_that_raises_ends_the_job_with_its_rank_and_cause(tmp_path):
    """Rank 1 alone gets a model it cannot build while rank 0 waits for it: the job must not hang."""
    command = mpiexec(1) + [sys.executable, "-m", "nbconv", "train", "lenet5", "--data-dir", SAMPLE] + \
        [":", "-n", "1", sys.executable, "-m", "nbconv", "train", "conv4k3,wat", "--data-dir", SAMPLE]
    if "--oversubscribe" in command:
        pytest.skip("the MPMD form is tested with MPICH's mpiexec")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=environment(), start_new_session=True, cwd=str(tmp_path))
    output = finish(process, within=120)
    assert process.returncode != 0
    assert "rank 1 of 2 failed" in output and "unknown layer token 'wat'" in output


@needs_mpi
def test_ctrl_c_on_mpiexec_saves_like_a_single_process(tmp_path):
    process, out = start_training(tmp_path, 2, "--limit", "1500")
    os.kill(process.pid, signal.SIGINT)
    output = finish(process, within=30)
    assert process.returncode == 130, output
    assert output.count("interrupted: checkpoint saved") == 1  # rank 0 alone
    assert len(checkpoint.load(out).history) >= 1


@needs_mpi
@pytest.mark.parametrize("cuda_aware", ["0", "1"])
def test_device_gradients_reduce_staged_or_straight_from_device_memory(tmp_path, cuda_aware):
    """Under Numba's CUDA simulator: one GPU per process, buckets of device arrays, 7 images on 2 processes."""
    out = str(tmp_path / "device.json")
    env = dict(environment(), NUMBA_ENABLE_CUDASIM="1", NBCONV_MPI_CUDA_AWARE=cuda_aware)
    result = subprocess.run(mpiexec(2) + [sys.executable, os.path.join(ROOT, "tests", "distributed_device.py"), out],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    with open(out) as handle:
        report = json.load(handle)
    assert report["size"] == 2 and report["device"] == 0 and report["through_device"] == (cuda_aware == "1")
    assert report["max_relative_error"] < 1e-5


@needs_mpi
def test_running_statistics_are_averaged_over_the_processes():
    code = """
import numpy as np
from nbconv import distributed
from nbconv.nn.module import Layer, Sequential

class Statistics(Layer):
    pass

world = distributed.MPIWorld()
layer = Statistics()
layer.name = "bn1"
layer.running_mean = np.full(3, world.rank + 1.0, np.float32)
layer.running_var = np.array([1.0, 2.0 * world.rank, 5.0], np.float32)
world.average_running_statistics(Sequential([layer]))
assert layer.running_mean.dtype == np.float32
np.testing.assert_allclose(layer.running_mean, [1.5, 1.5, 1.5])
np.testing.assert_allclose(layer.running_var, [1.0, 1.0, 5.0])
print("averaged on rank", world.rank)
"""
    result = subprocess.run(mpiexec(2) + [sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env=environment())
    assert result.returncode == 0 and result.stdout.count("averaged on rank") == 2, result.stdout + result.stderr


@pytest.mark.skipif(distributed.mpi_library()[0] is None, reason="mpi4py or its MPI library is missing")
@pytest.mark.parametrize("overlap", [True, False])
def test_reductions_start_while_earlier_layers_still_run_backward(overlap):
    """One process (MPI_COMM_SELF): the order of layer backwards and bucket reductions, as they happen."""
    from mpi4py import MPI

    from nbconv import models
    from nbconv import functional as F

    events = []

    class RecordingComm:
        def __init__(self, comm):
            self.comm = comm

        def __getattr__(self, name):
            return getattr(self.comm, name)

        def Iallreduce(self, *args, **kwargs):
            events.append("reduce")
            return self.comm.Iallreduce(*args, **kwargs)

        def Allreduce(self, *args, **kwargs):
            events.append("reduce")
            return self.comm.Allreduce(*args, **kwargs)

    model = models.build("conv4k3,relu,conv8k3,relu,flatten,fc16,relu,fc10", input_shape=(1, 12, 12), seed=0)
    for layer in model.layers:
        def logged(*args, _backward=layer.backward, _name=layer.name, **kwargs):
            events.append(_name)
            return _backward(*args, **kwargs)
        layer.backward = logged
    world = distributed.MPIWorld(comm=RecordingComm(MPI.COMM_SELF), bucket_bytes=1024, overlap=overlap)
    images = np.random.default_rng(0).standard_normal((6, 1, 12, 12)).astype(np.float32)
    expected = models.build("conv4k3,relu,conv8k3,relu,flatten,fc16,relu,fc10", input_shape=(1, 12, 12), seed=0)
    for net in (model, expected):
        loss, grad_logits = F.softmax_cross_entropy(net.forward(images), np.arange(6))
        (world.backward(model, grad_logits, 6, 6) if net is model else net.backward(grad_logits, need_input_grad=False))
    buckets = len(world._reducer.buckets)
    assert buckets >= 3 and events.count("reduce") == buckets
    if overlap:  # fc2's bucket starts right after fc2's backward, long before conv1's
        assert events.index("reduce") == events.index("fc2") + 1 and events[-1] == "reduce"
        assert events.index("reduce") < events.index("conv1")
    else:
        assert events[-buckets:] == ["reduce"] * buckets
    for got, want in zip(model.parameters(), expected.parameters()):
        np.testing.assert_array_equal(got.grad, want.grad)


def test_sequential_backward_calls_after_layer_in_backward_order_without_changing_gradients():
    from nbconv import models
    from nbconv import functional as F

    spec = "conv4k3,relu,maxpool2,flatten,fc10"
    images = np.random.default_rng(1).standard_normal((3, 1, 8, 8)).astype(np.float32)
    seen, grads = [], []
    for after_layer in (None, lambda layer: seen.append(layer.name)):
        model = models.build(spec, input_shape=(1, 8, 8), seed=0)
        loss, grad_logits = F.softmax_cross_entropy(model.forward(images), np.array([1, 2, 3]))
        model.backward(grad_logits, need_input_grad=False, after_layer=after_layer)
        grads.append([p.grad for p in model.parameters()])
    # the ReLU runs after the max pooling (execution_order), so backward meets it first
    assert seen == ["fc1", "flatten1", "relu1", "pool1", "conv1"]
    for with_hook, without in zip(grads[1], grads[0]):
        np.testing.assert_array_equal(with_hook, without)


def test_info_names_the_mpi_library_or_how_to_install_one(monkeypatch):
    from nbconv_cli.info import mpi_status
    library, reason = distributed.mpi_library()
    monkeypatch.setenv("PMI_SIZE", "3")
    monkeypatch.setenv("PMI_RANK", "2")
    status = mpi_status()
    if library is None:
        assert 'pip install -e ".[mpi]"' in status
    else:
        assert status.startswith(library.split()[0]) and "3 processes launched, this is rank 2" in status


@needs_mpi
def test_scaling_benchmark_times_every_configuration_in_one_job():
    """benchmarks/distributed.py's worker: every configuration timed in the same mpiexec job, each block with
    positive rates (a smoke test of the benchmark the scaling table comes from, not a timing)."""
    script = os.path.join(ROOT, "benchmarks", "distributed.py")
    sys.path.insert(0, os.path.dirname(script))
    try:
        import distributed as benchmark
    finally:
        sys.path.remove(os.path.dirname(script))
    result = subprocess.run(mpiexec(2) + [sys.executable, script, "worker", "--model", "lenet5", "--steps", "1",
                                          "--blocks", "2"], capture_output=True, text=True, timeout=300,
                            env=dict(environment(), NUMBA_NUM_THREADS="2"))
    assert result.returncode == 0, result.stdout + result.stderr
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["weights"] == 61_706
    for label, *_ in benchmark.CONFIGS:
        assert len(measured[label]["images_per_s"]) == 2 and min(measured[label]["images_per_s"]) > 0
        assert min(measured[label]["cpu_ms"]) > 0


def scaling_benchmark():
    script = os.path.join(ROOT, "benchmarks", "distributed.py")
    sys.path.insert(0, os.path.dirname(script))
    try:
        import distributed as benchmark
    finally:
        sys.path.remove(os.path.dirname(script))
    return script, benchmark


def test_scaling_benchmark_picks_configurations_and_environment_variants():
    """--configs keeps 1 x 1 and the ceiling (the ratios need them); --variant parses NAME:VAR=VALUE,..."""
    _, benchmark = scaling_benchmark()
    assert [config[0] for config in benchmark.selected("blocking")] == \
        [benchmark.BASE, "2 processes x 1 thread, blocking", benchmark.CEILING]
    assert benchmark.selected(None) == benchmark.CONFIGS
    with pytest.raises(SystemExit, match="unknown fast"):
        benchmark.selected("blocking,fast")
    args = type("Args", (), {"variant": ["cells:A=1,B=2", "cma:C=0"]})()
    assert benchmark.variants(args) == [("defaults", {}), ("cells", {"A": "1", "B": "2"}), ("cma", {"C": "0"})]
    for bad in ("cells", "cells:A", ":A=1"):
        with pytest.raises(SystemExit, match="--variant"):
            benchmark.variants(type("Args", (), {"variant": [bad]})())
    assert benchmark.in_rotation([1, 2, 3], 4) == [2, 3, 1]


@needs_mpi
def test_reduction_benchmark_times_each_size_on_two_processes():
    """benchmarks/distributed.py reduction-worker: per size, one positive time per call (a smoke test)."""
    script, _ = scaling_benchmark()
    result = subprocess.run(mpiexec(2) + [sys.executable, script, "reduction-worker", "--sizes", "5,70000",
                                          "--calls", "3"], capture_output=True, text=True, timeout=120,
                            env=environment())
    assert result.returncode == 0, result.stdout + result.stderr
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("5", "70000", "cpu 5", "cpu 70000"):
        assert len(measured[key]) == 3 and min(measured[key]) > 0


@pytest.mark.skipif(distributed.mpi_library()[0] is None, reason="mpi4py or its MPI library is missing")
@pytest.mark.parametrize("overlap", [True, False])
def test_gradients_reduce_in_the_optimizers_flat_buffer_and_totals_travel_with_them(overlap):
    """One process (MPI_COMM_SELF): from the optimizer's first step on, the layers write their gradients into its
    flat buffer and the reduction sums them there (no packing, .grad stays the optimizer's view); the step's
    totals reduce alongside, so step_totals starts no collective; the gradients and the updates match a model
    trained without any world, bit for bit."""
    from mpi4py import MPI

    from nbconv import functional as F
    from nbconv import models
    from nbconv.train import TrainConfig, make_optimizer

    collectives = []

    class RecordingComm:
        def __init__(self, comm):
            self.comm = comm

        def __getattr__(self, name):
            return getattr(self.comm, name)

        def Iallreduce(self, send, receive, op):
            collectives.append(receive)
            return self.comm.Iallreduce(send, receive, op=op)

        def Allreduce(self, send, receive, op):
            collectives.append(receive)
            return self.comm.Allreduce(send, receive, op=op)

    spec = "conv4k3,relu,maxpool2,flatten,fc16,relu,fc10"
    world = distributed.MPIWorld(comm=RecordingComm(MPI.COMM_SELF), overlap=overlap)
    images = np.random.default_rng(0).standard_normal((5, 1, 10, 10)).astype(np.float32)
    labels = np.array([0, 3, 1, 9, 4])
    nets = [models.build(spec, input_shape=(1, 10, 10), seed=0) for _ in range(2)]
    optimizers = [make_optimizer(TrainConfig(model=spec), net.parameters()) for net in nets]
    for step in range(3):
        collectives.clear()
        for net, optimizer in zip(nets, optimizers):
            logits = net.forward(images)
            loss, grad_logits = F.softmax_cross_entropy(logits, labels)
            if net is nets[0]:
                world.backward(net, grad_logits, 5, 5, totals=(loss * 5, 2))
                assert world.step_totals(loss * 5, 2) == (pytest.approx(loss * 5), 2)
            else:
                net.backward(grad_logits, need_input_grad=False)
            for got, want in zip(nets[0].parameters(), nets[1].parameters()):
                if net is nets[1]:
                    np.testing.assert_array_equal(got.grad, want.grad)
            optimizer.step()
        assert len(collectives) == 2  # the totals and one bucket: step_totals added none
        reduced = collectives[1]
        flat = optimizers[0].flat
        if step == 0:  # before the first step the layers had no flat buffer to write into: copied into the bucket
            assert flat is None or reduced.base is not flat.grads
        else:
            assert reduced.base is flat.grads and reduced.size == flat.grads.size  # summed where the layers wrote
            assert all(parameter.grad is parameter.grad_buffer for parameter in nets[0].parameters())
    for got, want in zip(nets[0].parameters(), nets[1].parameters()):
        np.testing.assert_array_equal(got.value, want.value)


class Exited(BaseException):
    """What os._exit raises in the abort tests instead of ending the test's process."""


class TakenInTurn:
    """The abort lock, taken first by the thread `first` ("main" or "watch"): the other thread waits up to
    `patience` seconds for that before it tries (a thread that never gets there does not keep it waiting)."""

    def __init__(self, first, patience=0.2):
        self.lock, self.first, self.patience, self.taken_by_first = threading.Lock(), first, patience, threading.Event()

    def __enter__(self):
        role = "watch" if threading.current_thread().name == "nbconv-peer-watch" else "main"
        if role != self.first:
            self.taken_by_first.wait(self.patience)
        self.lock.acquire()
        if role == self.first:
            self.taken_by_first.set()

    def __exit__(self, *exc_info):
        self.lock.release()


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="tells a vanished process from a live one through /proc")
@pytest.mark.parametrize("first", ["main", "watch"])
@pytest.mark.parametrize("abort_blocks", [0.0, 0.05])
def test_the_watch_thread_and_the_main_thread_aborting_for_one_vanished_peer_do_not_hang(monkeypatch, capsys, first,
                                                                                           abort_blocks):
    """The watch thread names a vanished peer and aborts while the main thread aborts too (an MPI error from the
    same peer): both at once, released together from a barrier, the abort lock taken first by `first`. Both
    calls end (MPI_Abort returns here, at once or after a while, and os._exit raises), and every line on stderr
    names the vanished peer."""
    from nbconv.peer_watch import PeerWatch

    vanished = subprocess.Popen(["true"])
    vanished.wait()  # reaped: its pid names no process
    aborts = []

    class ReturningAbortComm:
        def Abort(self, code):
            aborts.append((threading.current_thread().name, code))
            time.sleep(abort_blocks)

    def exit_raises(code):
        raise Exited(code)

    monkeypatch.setattr(os, "_exit", exit_raises)
    trials = 5
    for trial in range(trials):
        aborts.clear()
        world = distributed.MPIWorld.__new__(distributed.MPIWorld)
        world.rank, world.size, world.comm = 0, 2, ReturningAbortComm()
        world.processes = [(os.getpid(), "here"), (vanished.pid, "here")]
        world._abort_lock = TakenInTurn(first)
        together = threading.Barrier(2, timeout=5)
        ended = []

        def abort_from(role, cause):
            together.wait()
            try:
                world.abort(cause)
            except Exited as exit:
                ended.append((role, exit.args[0]))

        world.watch = PeerWatch({1: (vanished.pid, None)}, lambda rank: abort_from("watch", f"rank {rank} is gone"),
                                interval=0.001)
        main = threading.Thread(target=abort_from, args=("main", "MPI error: process_vm_readv failed"), daemon=True)
        with world.watch.armed():
            world.watch.start()
            watch_thread = world.watch._thread
            main.start()
            main.join(5)
            watch_thread.join(5)
        assert not main.is_alive() and not watch_thread.is_alive(), f"abort hung in trial {trial}"
        assert sorted(ended) == [("main", 1), ("watch", 1)] and len(aborts) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 * trials and all(
        line.startswith(f"nbconv: rank 1 of 2 is gone: its process {vanished.pid} on here") for line in lines)
