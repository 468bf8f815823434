"""Run by tests/test_distributed.py under mpiexec with NUMBA_ENABLE_CUDASIM=1: gradients of a model on the
'cuda' backend summed over the processes (through host staging buffers, or straight from device memory when
NBCONV_MPI_CUDA_AWARE=1) must equal the gradients of the whole global batch computed on the CPU. Rank 0
writes {"size", "max_relative_error", "device", "through_device"} to the JSON file named by argv[1]."""
import json
import sys

import numpy as np

from nbconv import backend, distributed, models
from nbconv import functional as F

world = distributed.MPIWorld(bucket_bytes=256)
device = distributed.select_local_device(world)
spec, shape, batch = "conv3k3,relu,flatten,fc6,relu,fc4", (2, 5, 5), 7
rng = np.random.default_rng(5)
images = rng.standard_normal((batch, *shape)).astype(np.float32)
labels = rng.integers(0, 4, batch)

reference = models.build(spec, input_shape=shape, seed=1)
loss, grad_logits = F.softmax_cross_entropy(reference.forward(images), labels)
reference.backward(grad_logits, need_input_grad=False)

model = models.build(spec, input_shape=shape, seed=1).to("cuda")
mine, my_labels = world.shard(images), world.shard(labels)
loss, grad_logits = F.softmax_cross_entropy(model.forward(backend.to_device(mine)), backend.to_device(my_labels))
world.backward(model, grad_logits, len(mine), batch)
errors = [float(np.abs(backend.to_host(p.grad) - q.grad).max() / np.abs(q.grad).max())
          for p, q in zip(model.parameters(), reference.parameters())]
assert all(backend.is_device_array(p.grad) for p in model.parameters())
if world.is_root:
    with open(sys.argv[1], "w") as handle:
        json.dump({"size": world.size, "max_relative_error": max(errors), "device": device,
                   "through_device": world._reducer.through_device}, handle)
