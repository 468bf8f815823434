"""Run by tests/test_shared_gradients.py under mpiexec -n K: gradients summed in shared memory, checked on
every process against the same gradients computed without a world and summed in rank order by numpy.

Each process trains a copy of a small model through MPIWorld (shared memory, blocking) and another copy
without any world on the same shard (its gradient scaled as the world scales it), for 4 steps of a global
batch of 7 (K = 2: shards 4/3; K = 3: 3/2/2) and one of 2 (a process with no images on K = 3). Per step:
the world's reduced gradients equal the numpy sum of every process's own gradients in rank order, bit for
bit; the step's totals are the sums of every process's totals; from the second step on, the optimizer's
flat gradient buffer is this process's slot (the layers wrote there: nothing copied); the updates keep both
copies' parameters equal to the bit. The last rank's first layer takes 100 ms longer in backward, so the
others sum the later layers' pieces while it computes: every piece is summed once a step, by one process, and
the last rank sums fewer than the others together. Rank 0 writes {"size", "shared", "checked"} as JSON to OUT.

python tests/distributed_shared.py OUT.json
"""
import json
import sys
import time

import numba
import numpy as np

from nbconv import distributed, models
from nbconv import functional as F
from nbconv.train import TrainConfig, make_optimizer

numba.set_num_threads(1)
world = distributed.MPIWorld(overlap=False, shared=True)
comm = world.comm
spec = "conv4k3p1,relu,maxpool2,flatten,fc16,relu,fc10"
nets = [models.build(spec, input_shape=(1, 9, 9), seed=0) for _ in range(2)]
optimizers = [make_optimizer(TrainConfig(model=spec), net.parameters()) for net in nets]
rng = np.random.default_rng(1)
if world.rank == world.size - 1:  # slow: the other processes finish backward first
    first_layer = nets[0].layers[0]
    for name in [name for name in ("backward", "backward_fused") if hasattr(first_layer, name)]:
        def slowed(*args, original=getattr(first_layer, name), **kwargs):
            time.sleep(0.1)
            return original(*args, **kwargs)
        setattr(first_layer, name, slowed)
checked = 0
with world.guard():
    for step, batch in enumerate((7, 7, 7, 7, 2)):
        images = rng.standard_normal((batch, 1, 9, 9)).astype(np.float32)
        labels = rng.integers(0, 10, batch)
        mine, indices = world.shard(images), world.shard(np.arange(batch))
        own_grads, sent_totals = None, (0.0, 0)
        for net, optimizer in zip(nets, optimizers):
            grad_logits = None
            if len(mine):
                loss, grad_logits = F.softmax_cross_entropy(net.forward(mine), labels[indices])
                sent_totals = (loss * len(mine), step + world.rank)
            if net is nets[0]:
                world.backward(net, grad_logits, len(mine), batch, totals=sent_totals)
                totals = world.step_totals(*sent_totals)
            else:
                for parameter in net.parameters():
                    parameter.grad = None
                if len(mine):
                    net.backward(distributed.scale(grad_logits, len(mine) / batch), need_input_grad=False)
                own_grads = [np.zeros_like(p.value) if p.grad is None else np.array(p.grad) for p in net.parameters()]
        everyone = comm.allgather(own_grads)
        for index, parameter in enumerate(nets[0].parameters()):
            expected = everyone[0][index].copy()
            for grads in everyone[1:]:
                expected += grads[index]
            assert np.array_equal(parameter.grad, expected), (step, index)
            nets[1].parameters()[index].grad = expected  # the untouched copy steps from the same sum
        all_totals = comm.allgather(sent_totals)
        assert totals[1] == sum(hits for _, hits in all_totals), totals
        loss_sum = 0.0
        for loss, _ in all_totals:  # float64, in rank order
            loss_sum += float(loss)
        assert totals[0] == loss_sum, (totals, loss_sum)
        for optimizer in optimizers:
            optimizer.step()
        if step >= 1:
            assert optimizers[0].flat.grads is world._shared_reducer.slot, "the flat buffer is not in the slot"
            assert all(p.grad is p.grad_buffer for p in nets[0].parameters())
        for got, want in zip(nets[0].parameters(), nets[1].parameters()):
            assert np.array_equal(got.value, want.value), step
        checked += 1
summed = comm.allgather(world._shared_reducer.sum.pieces_summed)
assert sum(summed) == checked * len(world._shared_reducer.sum.pieces), summed
assert summed[-1] < sum(summed[:-1]), summed  # the fast ones summed more (between them: either may win a claim)
if world.is_root:
    with open(sys.argv[1], "w") as handle:
        json.dump({"size": world.size, "shared": world._shared_reducer is not None, "checked": checked}, handle)
