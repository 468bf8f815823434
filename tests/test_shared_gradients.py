"""Gradients summed in shared memory (nbconv.shared_gradients): the chunks each process sums, the optimizer's
flat gradient buffer moved into a slot, the world's choice and its fallback to Allreduce; under mpiexec, the
sums against numpy's and the loss curves against Allreduce's and one process's."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from nbconv import distributed, models
from nbconv import functional as F
from nbconv import shared_gradients
from nbconv.train import TrainConfig, make_optimizer
from tests.test_distributed import ROOT, environment, mpiexec, needs_mpi, run_steps


def test_pieces_cut_each_region_in_order_and_cover_it():
    regions = [(10, 20), (0, 10), (20, 20), (20, 20_000), (20_000, 20_001)]
    for piece_values in (1, 3, 8192, 100_000):
        pieces = shared_gradients.pieces_of(regions, piece_values)
        assert all(0 < stop - start <= piece_values for start, stop, _ in pieces)
        for index, (start, stop) in enumerate(regions):
            mine = [(a, b) for a, b, region in pieces if region == index]
            assert [a for a, _ in mine] == list(range(start, stop, piece_values))  # in order, from the start
            assert (mine[-1][1] if mine else start) == stop and all(b == a2 for (_, b), (a2, _) in zip(mine, mine[1:]))
        assert [region for _, _, region in pieces] == sorted(region for _, _, region in pieces)


def trained_pair(spec="conv4k3,relu,maxpool2,flatten,fc16,relu,fc10"):
    nets = [models.build(spec, input_shape=(1, 10, 10), seed=0) for _ in range(2)]
    return nets, [make_optimizer(TrainConfig(model=spec), net.parameters()) for net in nets]


def step(net, optimizer, images, labels):
    _, grad_logits = F.softmax_cross_entropy(net.forward(images), labels)
    net.backward(grad_logits, need_input_grad=False)
    optimizer.step()


def test_the_flat_gradient_buffer_moves_into_another_array_and_training_goes_on_to_the_same_bits():
    """place_grads: the values come along, the layers write into the new array from the next step on, the
    optimizer keeps its one-pass flat step, and the updates are those of a model whose buffer stayed."""
    rng = np.random.default_rng(0)
    images, labels = rng.standard_normal((5, 1, 10, 10)).astype(np.float32), np.array([0, 3, 1, 9, 4])
    (moved, stayed), (moved_optimizer, stayed_optimizer) = trained_pair()
    for net, optimizer in ((moved, moved_optimizer), (stayed, stayed_optimizer)):
        step(net, optimizer, images, labels)
    flat = moved_optimizer.flat
    old = flat.grads
    target = np.full(old.size + 8, np.nan, np.float32)[4:-4]  # a view into a larger array, as a slot is
    flat.place_grads(target)
    assert flat.grads is target and np.array_equal(target, old)
    assert all(p.grad_buffer.base is target.base for p in moved.parameters())
    assert all(grads.base is target.base for _, grads, _, _ in flat.run_views)
    assert shared_gradients.buffers_holding_grads(target) is flat
    assert shared_gradients.buffers_holding_grads(old) is None
    calls = []
    unchanged = moved_optimizer._unchanged_flat_step
    moved_optimizer._unchanged_flat_step = lambda: calls.append(unchanged()) or calls[-1]
    for _ in range(3):
        for net, optimizer in ((moved, moved_optimizer), (stayed, stayed_optimizer)):
            step(net, optimizer, images, labels)
        for got, want in zip(moved.parameters(), stayed.parameters()):
            assert np.array_equal(got.value, want.value) and np.array_equal(got.grad, want.grad)
    assert calls == [True] * 3  # the layers wrote into the new buffer: nothing to gather
    assert all(p.grad is p.grad_buffer for p in moved.parameters())
    with pytest.raises(ValueError, match="place_grads"):
        flat.place_grads(np.zeros(old.size + 1, np.float32))
    with pytest.raises(ValueError, match="place_grads"):
        flat.place_grads(np.zeros(old.size, np.float64))


def test_shared_sums_follow_the_environment_or_the_world(monkeypatch):
    for value, expected in (("0", False), ("1", True), ("auto", None)):
        monkeypatch.setenv("NBCONV_MPI_SHARED", value)
        assert distributed.shared_requested() is expected
    monkeypatch.delenv("NBCONV_MPI_SHARED")
    assert distributed.shared_requested() is None
    monkeypatch.setenv("NBCONV_MPI_SHARED", "yes")
    with pytest.raises(ValueError, match="NBCONV_MPI_SHARED"):
        distributed.shared_requested()


@needs_mpi
def test_one_process_world_sums_in_shared_memory_or_falls_back_to_allreduce(monkeypatch):
    """MPI_COMM_SELF: one process alone sums through MPI (nothing to share) unless told; told, a slot of
    its own; where shared windows cannot be allocated, the world falls back to Allreduce for good, and the
    training steps match a model trained without any world, bit for bit, either way."""
    from mpi4py import MPI

    assert distributed.MPIWorld(comm=MPI.COMM_SELF).shared is False
    rng = np.random.default_rng(0)
    images, labels = rng.standard_normal((5, 1, 10, 10)).astype(np.float32), np.array([0, 3, 1, 9, 4])
    for broken in (False, True):
        if broken:
            def refuse(*args, **kwargs):
                raise MPI.Exception(MPI.ERR_OTHER)
            monkeypatch.setattr(shared_gradients.SharedSum, "__init__", refuse)
        world = distributed.MPIWorld(comm=MPI.COMM_SELF, overlap=False, shared=True)
        (net, alone), (optimizer, alone_optimizer) = trained_pair()
        for _ in range(3):
            loss, grad_logits = F.softmax_cross_entropy(net.forward(images), labels)
            world.backward(net, grad_logits, 5, 5, totals=(loss * 5, 2))
            assert world.step_totals(loss * 5, 2) == (pytest.approx(loss * 5), 2)
            optimizer.step()
            step(alone, alone_optimizer, images, labels)
            for got, want in zip(net.parameters(), alone.parameters()):
                assert np.array_equal(got.value, want.value)
        assert (world._shared_reducer is None) is broken and world.shared is not broken
        if not broken:
            assert optimizer.flat.grads is world._shared_reducer.slot


@needs_mpi
@pytest.mark.parametrize("k", [2, 3])
def test_shared_sums_are_numpys_rank_order_sums_on_every_process(tmp_path, k):
    """tests/distributed_shared.py: every step's reduced gradients and totals against numpy's sums of every
    process's own, bit for bit, an empty shard included (k = 3), the flat buffer in the slot."""
    out = str(tmp_path / "shared.json")
    result = subprocess.run(mpiexec(k) + [sys.executable, os.path.join(ROOT, "tests", "distributed_shared.py"), out],
                            capture_output=True, text=True, timeout=300, env=environment())
    assert result.returncode == 0, result.stdout + result.stderr
    with open(out) as handle:
        assert json.load(handle) == {"size": k, "shared": True, "checked": 5}


@needs_mpi
def test_shared_memory_and_allreduce_give_the_same_bits_and_the_loss_curve_of_one_process(tmp_path):
    """2 processes: a + b in either path, so the same losses to the bit; 4 processes (shards of 15/15/14/14,
    a last batch of 2 split 1/1/0/0): one process's loss curve, as through Allreduce."""
    shared = run_steps(tmp_path, 2, "--limit", "600", "--no-overlap", "--shared", "1")
    allreduce = run_steps(tmp_path, 2, "--limit", "600", "--no-overlap", "--shared", "0")
    assert shared["shared"] and not allreduce["shared"]
    assert shared["losses"] == allreduce["losses"] and shared["fc_weight_sum"] == allreduce["fc_weight_sum"]
    options = ["--model", "lenet5", "--batch-size", "58", "--limit", "2902"]
    single = run_steps(tmp_path, None, *options)
    four = run_steps(tmp_path, 4, *options, "--no-overlap")  # the world's choice on one node: shared memory
    assert four["shared"] and four["weights_agree"] and len(four["losses"]) == 51
    np.testing.assert_allclose(four["losses"], single["losses"], rtol=1e-4)


def test_shared_memory_room_is_asked_of_the_directory(tmp_path):
    assert shared_gradients.shared_memory_room(1, str(tmp_path))[0]
    room, free = shared_gradients.shared_memory_room(2**62, str(tmp_path))
    assert not room and free > 0
    assert shared_gradients.shared_memory_room(2**62, str(tmp_path / "absent")) == (True, None)


@needs_mpi
def test_without_room_in_shared_memory_the_world_sums_with_allreduce(monkeypatch, capsys):
    """A /dev/shm too small for the slots (a container's 64 MB default): Allreduce, said once, never a window
    whose pages the MPI cannot back (SIGBUS at the first write past the room)."""
    from mpi4py import MPI

    monkeypatch.setattr(shared_gradients, "shared_memory_room", lambda needed: (False, 1024))
    monkeypatch.setattr(shared_gradients.SharedSum, "__init__", lambda *args: pytest.fail("windows allocated"))
    world = distributed.MPIWorld(comm=MPI.COMM_SELF, overlap=False, shared=True)
    rng = np.random.default_rng(0)
    images, labels = rng.standard_normal((5, 1, 10, 10)).astype(np.float32), np.array([0, 3, 1, 9, 4])
    (net, alone), (optimizer, alone_optimizer) = trained_pair()
    for _ in range(2):
        _, grad_logits = F.softmax_cross_entropy(net.forward(images), labels)
        world.backward(net, grad_logits, 5, 5)
        optimizer.step()
        step(alone, alone_optimizer, images, labels)
    assert world.shared is False and world._shared_reducer is None
    for got, want in zip(net.parameters(), alone.parameters()):
        assert np.array_equal(got.value, want.value)
    assert capsys.readouterr().err.count("MPI Allreduce") == 1


@needs_mpi
def test_a_world_trains_models_in_turn_each_with_its_own_optimizer_to_the_same_bits():
    """Two models trained in turn through one world (teacher and student): switching frees the last model's
    windows after moving its gradients and its optimizer's buffer out of them, and each model's updates
    stay those of a model trained without any world."""
    from mpi4py import MPI

    world = distributed.MPIWorld(comm=MPI.COMM_SELF, overlap=False, shared=True)
    rng = np.random.default_rng(0)
    images, labels = rng.standard_normal((5, 1, 10, 10)).astype(np.float32), np.array([0, 3, 1, 9, 4])
    pairs = [trained_pair(), trained_pair("conv3k3,relu,flatten,fc10")]
    released = []
    for turn in range(6):
        (net, alone), (optimizer, alone_optimizer) = pairs[turn % 2]
        for _ in range(2):
            _, grad_logits = F.softmax_cross_entropy(net.forward(images), labels)
            world.backward(net, grad_logits, 5, 5)
            optimizer.step()
            step(alone, alone_optimizer, images, labels)
        reducer = world._shared_reducer
        assert reducer.model is net and optimizer.flat.grads is reducer.slot
        released.append(reducer.sum)
        for got, want in zip(net.parameters(), alone.parameters()):
            assert np.array_equal(got.value, want.value), turn
    assert all(earlier.windows == [] for earlier in released[:-1]) and released[-1].windows
