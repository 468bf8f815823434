"""Seconds from process start to the end of the first LeNet-5 training step (JIT compile included).

Run with an empty NUMBA_CACHE_DIR for the cold figure, again for the warm one. Prints one float.
"""
import time

STARTED = time.perf_counter()

import numpy as np  # noqa: E402

import nbconv.functional as F  # noqa: E402
from nbconv import models  # noqa: E402
from nbconv.train import TrainConfig, make_optimizer  # noqa: E402

model = models.build("lenet5")
optimizer = make_optimizer(TrainConfig(), model.parameters())
x = np.zeros((64, 1, 28, 28), np.float32)
_, grad = F.softmax_cross_entropy(model.forward(x), np.zeros(64, np.int64))
model.backward(grad, need_input_grad=False)
optimizer.step()
print(f"{time.perf_counter() - STARTED:.2f}")
