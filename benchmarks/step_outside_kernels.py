"""What a LeNet-5 training step (batch 64, SGD with momentum, the loss as `nbconv train` computes it) spends
outside its kernels, and what freed memory handed back to the system costs it.

    python benchmarks/step_outside_kernels.py [--steps 400] [--keep-freed-memory]

Three measures in one process:
  step            the step's median time;
  Python alone    the same step with every kernel call returning at once (the layers' and the model's
                  Python: checks, plans, allocation; the kernels' own Python wrappers are skipped too);
  page faults     minor page faults a step (getrusage).
--keep-freed-memory first calls nbconv.host_memory.keep_freed_host_memory(), as `nbconv train` does; without
it, the process keeps glibc's defaults, as a training loop of one's own does.
"""
import argparse
import functools
import resource

import nbconv.kernels.serial as serial

_skip_kernels = False
_serialized = serial._serialized


def _skippable(kernel):
    """serial._serialized's wrapper, which returns at once while _skip_kernels is set."""
    call = _serialized(kernel)

    @functools.wraps(kernel)
    def skippable(*args, **kwargs):
        if _skip_kernels:
            return None
        return call(*args, **kwargs)
    return skippable


serial._serialized = _skippable  # before any kernel is looked up

import numpy as np  # noqa: E402

import nbconv.kernels.cpu.fused as fused  # noqa: E402
from nbconv import models  # noqa: E402
from nbconv.bench import time_call  # noqa: E402
from nbconv.train import StepLoss, TrainConfig, make_optimizer  # noqa: E402


def main():
    global _skip_kernels
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--keep-freed-memory", action="store_true")
    arguments = parser.parse_args()
    if arguments.keep_freed_memory:
        from nbconv.host_memory import keep_freed_host_memory
        keep_freed_host_memory()
    rng = np.random.default_rng(0)
    model = models.build("lenet5", seed=0)
    optimizer = make_optimizer(TrainConfig(lr=0.01), model.parameters())
    images = rng.standard_normal((64, 1, 28, 28)).astype(np.float32)
    step_loss, mine = StepLoss(rng.integers(0, 10, 64)), np.arange(64)

    def step():
        model.train()
        _, grad_logits, _ = step_loss(model.forward(images), mine)
        model.backward(grad_logits, need_input_grad=False)
        optimizer.step()

    for _ in range(50):
        step()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    whole = time_call(step, arguments.steps, warmup=0)[0]
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / arguments.steps
    _skip_kernels = True
    # the fused fully connected backward runs outside the serialized kernels: its three kernels skip too
    for name in ("relu_mask_bias", "linear_backward_input", "linear_backward_weight"):
        setattr(fused, name, lambda *args: None)
    alone = time_call(step, arguments.steps, warmup=0)[0]
    print(f"keep freed memory: {arguments.keep_freed_memory}; step {1e3 * whole:.2f} ms, "
          f"{faults:.0f} page faults a step; its Python alone {1e6 * alone:.0f} us ({100 * alone / whole:.1f}%)")


if __name__ == "__main__":
    main()
