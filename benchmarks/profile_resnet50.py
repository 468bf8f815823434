"""Where an imported ResNet-50's inference time goes, layer by layer (CPU).

    python benchmarks/profile_resnet50.py [--batch 1] [--calls 5] [--infer]

Wraps every leaf layer's forward with a timer, runs the model `--calls` times after a warm-up, and prints
the median time per layer group: convolutions by kind and map size, batch normalization, ReLU, residual
sums, pooling, the classifier; then the whole forward against `nn.infer`, alternating. "Python per call" is
the time of the nbconv.functional call minus its kernel: the same call made on a 1x1 image, where the kernel
does almost nothing, measured separately. With --infer the timed calls are the steps of the program `nn.infer`
records for the input instead: convolutions (with the batch norm, residual sum and ReLU their kernels apply,
"+ bn+relu"), pooling, the classifier, and any separate batch-norm/residual/ReLU passes.
"""
import argparse
import collections
import statistics
import time

import numpy as np

from nbconv import functional as F
from nbconv import nn
from resnet50_model import imported_resnet50




def group_name(layer, input_shape):
    kind = type(layer).__name__
    if isinstance(layer, nn.Conv2d):
        kh, kw = layer.kernel_size
        stride = layer.hyper["stride"]
        stride = stride if isinstance(stride, int) else stride[0]
        return f"conv {kh}x{kw}{' s' + str(stride) if stride != 1 else ''} on {input_shape[2]}x{input_shape[3]}"
    return kind


def step_name(step, slots):
    """What a recorded nn.infer step runs: a convolution (its group, with the epilogue it fuses), or the kind of
    pass its closure is (scale_shift, activate, a layer's own forward)."""
    free = dict(zip(step.__code__.co_freevars, (cell.cell_contents for cell in step.__closure__ or ())))
    layer = free.get("layer")
    if isinstance(layer, nn.Conv2d):
        fuse = free.get("fuse")
        parts = (("bn", fuse[0]), ("residual", fuse[1]), ("relu", fuse[2])) if fuse is not None else ()
        fused = "" if fuse is None else " + " + "+".join(part for part, present in parts if present is not None)
        return group_name(layer, slots[free["x"]].shape) + fused
    if layer is not None:
        return type(layer).__name__
    return step.__name__


def time_program_steps(model, records):
    """Wrap every step of the model's recorded nn.infer program with a timer that adds to records[(index, name)]."""
    (program,) = model.__dict__["_inference_programs"].values()
    timed = []
    for index, (step, release) in enumerate(program.schedule):
        def timed_step(slots, _step=step, _index=index):
            start = time.perf_counter()
            _step(slots)
            elapsed = time.perf_counter() - start
            records[(_index, step_name(_step, slots))].append(elapsed)
        timed.append((timed_step, release))
    program.schedule = timed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--infer", action="store_true", help="profile nn.infer instead of forward")
    arguments = parser.parse_args()
    model, _ = imported_resnet50(np.random.default_rng(1))
    x = np.random.default_rng(0).standard_normal((arguments.batch, 3, 224, 224)).astype(np.float32)
    records = collections.defaultdict(list)  # (path, group) -> seconds per call
    leaves = [(path, layer) for path, layer in model.named_layers() if not layer.children()]
    for path, layer in [] if arguments.infer else leaves:
        original = layer.forward

        def timed(input, _original=original, _path=path, _layer=layer):
            start = time.perf_counter()
            output = _original(input)
            records[(_path, group_name(_layer, input.shape))].append(time.perf_counter() - start)
            return output
        layer.forward = timed
    run = (lambda: nn.infer(model, x)) if arguments.infer else (lambda: model.forward(x))
    run()
    if arguments.infer:
        time_program_steps(model, records)
    records.clear()  # (the warm-up call's)
    totals = []
    for _ in range(arguments.calls):
        start = time.perf_counter()
        run()
        totals.append(time.perf_counter() - start)
    if arguments.infer:
        model.__dict__.pop("_inference_programs", None)  # recorded again, without the timers
    groups = collections.defaultdict(lambda: [0.0, 0])
    for (path, group), times in records.items():
        groups[group][0] += statistics.median(times)
        groups[group][1] += 1
    total = statistics.median(totals)
    leaf_sum = sum(seconds for seconds, _ in groups.values())
    print(f"ResNet-50 imported, batch {arguments.batch}, {'nn.infer' if arguments.infer else 'forward'}: "
          f"{1e3 * total:.1f} ms per call (median of "
          f"{arguments.calls}); leaf layers {1e3 * leaf_sum:.1f} ms, containers (residual sums) "
          f"{1e3 * (total - leaf_sum):.1f} ms")
    print(f"{'group':28s} {'layers':>6s} {'ms':>8s} {'share':>6s}")
    for group, (seconds, count) in sorted(groups.items(), key=lambda item: -item[1][0]):
        print(f"{group:28s} {count:6d} {1e3 * seconds:8.2f} {100 * seconds / total:5.1f}%")
    # unwrapped again: the whole model, forward against nn.infer, alternating
    for path, layer in [] if arguments.infer else leaves:
        del layer.forward
    times = {"forward": [], "nn.infer": []}
    for _ in range(arguments.calls):
        for name, run in (("forward", model.forward), ("nn.infer", lambda x: nn.infer(model, x))):
            start = time.perf_counter()
            run(x)
            times[name].append(time.perf_counter() - start)
    forward, inferred = statistics.median(times["forward"]), statistics.median(times["nn.infer"])
    print(f"whole model, alternating: forward {1e3 * forward:.1f} ms, nn.infer {1e3 * inferred:.1f} ms "
          f"({forward / inferred:.2f}x)")
    tiny = np.ones((1, 64, 1, 1), np.float32)
    weight = np.ones((64, 64, 1, 1), np.float32)
    calls = {"conv2d": lambda: F.conv2d(tiny, weight), "relu": lambda: F.relu(tiny),
             "batch_norm (eval)": lambda: F.batch_norm(tiny, np.zeros(64, np.float32), np.ones(64, np.float32),
                                                        training=False),
             "add_": lambda: F.add_(tiny, tiny)}
    for name, call in calls.items():
        for _ in range(100):
            call()
        start = time.perf_counter()
        for _ in range(2000):
            call()
        print(f"Python per call, {name} on a 1x1 image: {1e6 * (time.perf_counter() - start) / 2000:.1f} us")


if __name__ == "__main__":
    main()
