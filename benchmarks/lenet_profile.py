"""Where a whole-process LeNet-5 epoch (`nbconv train lenet5 --epochs 1`) spends its time, part by part.

Usage: python benchmarks/lenet_profile.py [--mnist DIR] [--threads T] [--steps N] [--json]

Replays what `nbconv train` does, in the same order and with the same calls, timing each part in wall and
CPU seconds (CPU seconds are what a shared machine cannot inflate much: other jobs delay a process, they do
not make it execute more instructions):
  interpreter   `python -c pass` in a subprocess (the floor of any process);
  imports       the modules `python -m nbconv train` imports (nbconv, click, the CLI, numpy, Numba);
  build         models.build("lenet5") and the check that the model fits its input (its first forward);
  data          reading the MNIST files;
  first step    the first training step (Numba loads every kernel of a step from its on-disk cache);
  steps         N steady training steps, split into batch assembly, each layer's forward and backward,
                the loss with the hit count (train.StepLoss, as `nbconv train` runs it), the optimizer and the
                rest, scaled to a full epoch;
  test pass     predictions on the 10,000 test images;
  checkpoint    checkpoint.save.
The per-layer split comes from wrapping each layer's forward and backward with a timer (a few microseconds
each, reported as its own line).
"""
import time

STARTED_WALL, STARTED_CPU = time.perf_counter(), time.process_time()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from collections import defaultdict  # noqa: E402


class Clock:
    """Accumulates (wall, cpu) seconds per named part."""

    def __init__(self):
        self.parts = defaultdict(lambda: [0.0, 0.0, 0])

    def add(self, name, wall, cpu):
        part = self.parts[name]
        part[0] += wall
        part[1] += cpu
        part[2] += 1

    def timed(self, name, function, *args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        result = function(*args, **kwargs)
        self.add(name, time.perf_counter() - wall, time.process_time() - cpu)
        return result


def wrap_layers(model, clock):
    """Time every layer's forward and backward under its name."""
    for layer in model.layers:
        for method in ("forward", "backward"):
            original = getattr(layer, method)

            def timed(*args, _original=original, _name=f"{layer.name} {method}", **kwargs):
                return clock.timed(_name, _original, *args, **kwargs)

            setattr(layer, method, timed)


def interpreter_seconds():
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", default=os.environ.get("NBCONV_DATA_DIR", "/work/shared/data/mnist"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--steps", type=int, default=200, help="steady steps timed (scaled to the epoch's 938)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    clock = Clock()

    wall, cpu = time.perf_counter(), time.process_time()
    import click  # noqa: F401
    import numpy as np
    from nbconv_cli import main as _cli  # noqa: F401  (what `python -m nbconv` imports)
    from nbconv.startup import skip_numba_scipy_blas
    skip_numba_scipy_blas()  # as the app's main() does
    from nbconv_cli.common import configure_cpu
    from nbconv import backend, checkpoint, models
    from nbconv.data import describe, load
    from nbconv.data.batch import shifted_batch
    from nbconv.train import StepLoss, TrainConfig, check_outputs, make_optimizer, predict
    clock.add("imports", time.perf_counter() - wall, time.process_time() - cpu)
    configure_cpu(args.threads)
    import numba

    config = TrainConfig(model="lenet5", epochs=1)
    info = describe("mnist")
    wall, cpu = time.perf_counter(), time.process_time()
    model = models.build("lenet5", input_shape=tuple(info.shape), seed=0)
    check_outputs(model, info.shape, 10, "mnist")
    clock.add("build (and first forward of one image)", time.perf_counter() - wall, time.process_time() - cpu)
    splits = clock.timed("data (MNIST files)", load, "mnist", args.mnist, download_missing=False, allow_sample=False)
    optimizer = make_optimizer(config, model.parameters())
    images, labels = splits.train_images, splits.train_labels
    rng = np.random.default_rng([0, 0])
    order = rng.permutation(len(images))
    steps_per_epoch = -(-len(images) // config.batch_size)
    step_loss = StepLoss(labels)

    def step(k, timing):
        chosen = order[(k * 64) % len(order):][:64]
        shifts = rng.integers(0, 3, (len(chosen), 2))
        record = timing.timed if timing else (lambda _name, function, *a, **kw: function(*a, **kw))
        batch = record("batch assembly", shifted_batch, images, chosen, shifts, 1, config.mean, config.std,
                       np.float32, None)
        logits = model.forward(batch)
        loss, grad, _hits = record("loss and hits (train.StepLoss, as nbconv train)", step_loss, logits, chosen)
        model.backward(grad, need_input_grad=False)
        record("optimizer", optimizer.step)

    model.train()
    clock.timed("first step (kernels loaded from Numba's cache)", step, 0, None)
    for k in range(1, 6):
        step(k, None)
    steady = Clock()
    wrap_layers(model, steady)
    wall, cpu = time.perf_counter(), time.process_time()
    for k in range(args.steps):
        step(k, steady)
    total_wall, total_cpu = time.perf_counter() - wall, time.process_time() - cpu
    scale = steps_per_epoch / args.steps
    timed_wall = sum(part[0] for part in steady.parts.values())
    timed_cpu = sum(part[1] for part in steady.parts.values())
    steady.add("timer wrappers and the loop", total_wall - timed_wall, total_cpu - timed_cpu)
    for name, (part_wall, part_cpu, _) in steady.parts.items():
        clock.add(f"epoch: {name}", part_wall * scale, part_cpu * scale)
    model.train(False)
    clock.timed("test pass (10,000 images)", predict, model, splits.test_images, config.mean, config.std)
    out = os.path.join(tempfile.mkdtemp(), "m.npz")
    clock.timed("checkpoint", checkpoint.save, out, model, info.shape, optimizer, config.as_dict(), [])
    rows = [{"part": name, "wall_s": part[0], "cpu_s": part[1]} for name, part in clock.parts.items()]
    interpreter = interpreter_seconds()
    rows.insert(0, {"part": "interpreter start (python -c pass)", "wall_s": interpreter, "cpu_s": None})
    result = {"threads": numba.get_num_threads(), "steps_timed": args.steps, "steps_per_epoch": steps_per_epoch,
              "step_ms_wall": 1e3 * total_wall / args.steps, "step_ms_cpu": 1e3 * total_cpu / args.steps,
              "rows": rows}
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"threads {result['threads']}; steady step {result['step_ms_wall']:.2f} ms wall, "
          f"{result['step_ms_cpu']:.2f} ms CPU ({args.steps} steps timed, scaled to {steps_per_epoch})")
    print(f"{'part':<58} {'wall s':>8} {'CPU s':>8}")
    for row in rows:
        cpu_text = "" if row["cpu_s"] is None else f"{row['cpu_s']:8.3f}"
        print(f"{row['part']:<58} {row['wall_s']:8.3f} {cpu_text:>8}")


if __name__ == "__main__":
    main()
