"""What one LeNet-5 training step costs per phase, at two batch sizes: the part that scales with the batch and
the fixed part that does not (Python per layer, validation, the optimizer, the loss's readback).

    NUMBA_NUM_THREADS=1 python benchmarks/step_costs.py [--batches 64,128] [--steps 300] [--profile]

The step is the training loop's own (nbconv.train.train_epoch's body: batch assembly, forward, loss, hits,
backward through the world, the reduction (packing, MPI, unpacking: GradientReducer.finish), step totals,
optimizer), on synthetic MNIST-shaped data. Each phase is timed in
thread CPU time (what a loaded machine inflates least) and wall time; medians over the steps. Two batch
sizes give the fixed cost per step by extrapolating to an empty batch: fixed = 2 * t(64) - t(128).
--profile adds cProfile's 25 most expensive functions by own time, per step. --mpi runs under mpiexec (each
process its shard of every batch, blocking reductions; rank 0 reports).

    python benchmarks/step_costs.py --against OTHER_TREE [--rounds 5]

times this tree and another checkout (a copy of this script in its benchmarks/) in alternating child
processes, one thread each, and prints each phase's median over the rounds of the per-round medians. With
--mpi, each child is a world of one MPI process (no partner to wait for): the reduction's own costs alone.

    NUMBA_NUM_THREADS=1 python benchmarks/step_costs.py --alternate --batches 1,32,64 [--blocks 30]

times each batch size's step in alternating blocks and prints t(64) / (2 t(32)): the share of two cores
that two processes on 32-image shards of a 64-image batch can reach before any communication.

    NUMBA_NUM_THREADS=1 python benchmarks/step_costs.py --ab [--blocks 30]

compares, in one process and in alternating blocks of 10 steps (what a loaded machine disturbs least), the
step with and without each of four changes: the optimizer over flat buffers (against one kernel call a
parameter), the remembered convolution and pooling geometry (against checking it every call), the layers'
remembered last calls (nbconv.nn.last_call: direct kernel calls, against the validated path every call),
and the remembered convolution plans, their scratch views and one single-threaded-BLAS switch per pass
(against a plan, views and a switch for every kernel call).
"""
import argparse
import cProfile
import inspect
import json
import os
import pstats
import statistics
import subprocess
import sys
import time

import numpy as np


def phases(model, optimizer, world, images, labels, batch_size, steps, rng):
    """{phase: [thread CPU seconds per step]} and the same for wall time, over `steps` training steps."""
    from nbconv import functional as F
    from nbconv.data.batch import shifted_batch

    cpu = {name: [] for name in ("batch", "forward", "loss", "backward", "reduction", "totals", "optimizer",
                                 "step")}
    wall = {name: [] for name in cpu}
    dtype = np.float32
    takes_totals = "totals" in inspect.signature(world.backward).parameters
    reduction = [0.0, 0.0]  # this step's (wall, CPU) seconds in the reducer's finish: packing, MPI, unpacking
    if world.distributed:
        world.backward(model, None, 0, 1)  # makes the world's reducer, to time its finish
        finish = world._reducer.finish

        def timed_finish(*args, **kwargs):
            started = time.perf_counter(), time.thread_time()
            finish(*args, **kwargs)
            reduction[0] += time.perf_counter() - started[0]
            reduction[1] += time.thread_time() - started[1]
        world._reducer.finish = timed_finish
    for _ in range(steps):
        reduction[:] = [0.0, 0.0]
        chosen = rng.integers(0, len(images), batch_size)
        shifts = rng.integers(0, 3, (batch_size, 2))
        marks = [(time.perf_counter(), time.thread_time())]

        def mark():
            marks.append((time.perf_counter(), time.thread_time()))

        mine, shifts = world.shard(chosen), world.shard(shifts)
        batch = shifted_batch(images, mine, shifts, 1, 0.1307, 0.3081, dtype, None)
        batch_labels = labels[mine]
        mark()
        logits = model.forward(batch)
        mark()
        loss, grad_logits = F.softmax_cross_entropy(logits, batch_labels)
        hits = int((logits.argmax(axis=1) == batch_labels).sum())
        mark()
        if takes_totals:
            world.backward(model, grad_logits, len(mine), len(chosen), totals=(loss * len(mine), hits))
        else:  # a tree from before the totals travelled with the gradients
            world.backward(model, grad_logits, len(mine), len(chosen))
        mark()
        world.step_totals(loss * len(mine), hits)
        mark()
        optimizer.step()
        mark()
        for index, name in enumerate(("batch", "forward", "loss", "backward", "totals", "optimizer")):
            wall[name].append(marks[index + 1][0] - marks[index][0])
            cpu[name].append(marks[index + 1][1] - marks[index][1])
        wall["backward"][-1] -= reduction[0]
        cpu["backward"][-1] -= reduction[1]
        wall["reduction"].append(reduction[0])
        cpu["reduction"].append(reduction[1])
        wall["step"].append(marks[-1][0] - marks[0][0])
        cpu["step"].append(marks[-1][1] - marks[0][1])
    return cpu, wall


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="64,128")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--json", action="store_true", help="print {batch: {phase: CPU ms}} only")
    parser.add_argument("--against", default=None, help="another tree to compare with, in alternating rounds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ab", action="store_true", help="in-process A/B of the flat optimizer and the geometry")
    parser.add_argument("--blocks", type=int, default=30)
    parser.add_argument("--alternate", action="store_true", help="the step's CPU per batch size in blocks of 10 steps "
                        "alternating between the sizes, and t(b) / ((b / a) t(a)) for the last two sizes a, b")
    parser.add_argument("--mpi", action="store_true", help="under mpiexec -n K: each process its shard of every "
                        "batch, blocking reductions; rank 0 reports (the batch sizes are global)")
    args = parser.parse_args()
    if args.against:
        return compare(args)
    if args.ab:
        return in_process_ab(args)
    if args.alternate:
        return alternating(args)

    from nbconv import models
    from nbconv.distributed import SINGLE, MPIWorld
    world = MPIWorld(overlap=False) if args.mpi else SINGLE
    from nbconv.train import TrainConfig, make_optimizer

    data_rng = np.random.default_rng(0)
    images = data_rng.integers(0, 256, (4096, 1, 28, 28), dtype=np.uint8)
    labels = data_rng.integers(0, 10, 4096)
    sizes = [int(size) for size in args.batches.split(",")]
    results = {}
    for batch_size in sizes:
        model = models.build(args.model, input_shape=(1, 28, 28), seed=0)
        model.train()
        optimizer = make_optimizer(TrainConfig(model=args.model), model.parameters())
        rng = np.random.default_rng(1)
        phases(model, optimizer, world, images, labels, batch_size, 20, rng)  # warm-up: kernels loaded
        cpu, wall = phases(model, optimizer, world, images, labels, batch_size, args.steps, rng)
        results[batch_size] = cpu, wall
        if args.profile and world.is_root:
            profiler = cProfile.Profile()
            profiler.enable()
            phases(model, optimizer, world, images, labels, batch_size, 100, rng)
            profiler.disable()
        elif args.profile:
            phases(model, optimizer, world, images, labels, batch_size, 100, rng)
        if args.profile and world.is_root:
            print(f"\n# cProfile, batch {batch_size}, 100 steps (own time, ms per step)")
            stats = pstats.Stats(profiler)
            ranked = sorted(stats.stats.items(), key=lambda item: -item[1][2])
            rows = ranked[:25] + [row for row in ranked[25:] if "distributed" in row[0][0] or "mpi4py" in row[0][2]
                                  or "optim.py" in row[0][0]]
            for (filename, line, function), (calls, _, own, cumulative, _) in rows:
                print(f"{own * 10:8.3f} own {cumulative * 10:8.3f} cum {calls / 100:6.1f} calls  "
                      f"{filename.split('nbconv/')[-1]}:{line} {function}")
    if not world.is_root:
        return
    if args.json:
        print(json.dumps({size: {name: 1e3 * statistics.median(values) for name, values in results[size][0].items()}
                          for size in sizes}))
        return
    names = list(results[sizes[0]][0])
    print(f"\nmedian ms per step, thread CPU (wall), {args.steps} steps, batch sizes {sizes}")
    print("| phase | " + " | ".join(f"batch {size}" for size in sizes) +
          (" | fixed (2 t(a) - t(b)) |" if len(sizes) == 2 else " |"))
    print("|---|" + "---:|" * (len(sizes) + (len(sizes) == 2)))
    for name in names:
        cells = [f"{1e3 * statistics.median(results[size][0][name]):.3f} "
                 f"({1e3 * statistics.median(results[size][1][name]):.3f})" for size in sizes]
        if len(sizes) == 2:
            a, b = (statistics.median(results[size][0][name]) for size in sizes)
            ratio = sizes[1] / sizes[0]
            cells.append(f"{1e3 * (ratio * a - b) / (ratio - 1):.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


def alternating(args):
    """How far a step falls short of scaling with the batch: one model per batch size, blocks of 10 steps
    alternating between them (the order reversed every other block), thread CPU; prints each size's median
    and, for the last two sizes a < b, the median over blocks of t(b) / ((b / a) t(a)) (1: the step scales
    with the batch; two processes on a-image shards of a b-image batch reach at most this share of two
    cores' throughput before any communication)."""
    from nbconv import models
    from nbconv.distributed import SINGLE
    from nbconv.train import TrainConfig, make_optimizer

    data_rng = np.random.default_rng(0)
    images = data_rng.integers(0, 256, (4096, 1, 28, 28), dtype=np.uint8)
    labels = data_rng.integers(0, 10, 4096)
    sizes = [int(size) for size in args.batches.split(",")]
    trainers = {}
    for size in sizes:
        model = models.build(args.model, input_shape=(1, 28, 28), seed=0)
        model.train()
        trainers[size] = model, make_optimizer(TrainConfig(model=args.model), model.parameters()), \
            np.random.default_rng(1)
        phases(*trainers[size][:2], SINGLE, images, labels, size, 20, trainers[size][2])  # warm-up
    blocks = {size: [] for size in sizes}
    for block in range(args.blocks):
        for size in sizes if block % 2 == 0 else sizes[::-1]:
            model, optimizer, rng = trainers[size]
            cpu, _ = phases(model, optimizer, SINGLE, images, labels, size, 10, rng)
            blocks[size].append(statistics.median(cpu["step"]))
    for size in sizes:
        print(f"batch {size}: step {1e3 * statistics.median(blocks[size]):.3f} ms thread CPU (median over "
              f"{args.blocks} blocks of 10)")
    if len(sizes) >= 2:
        a, b = sizes[-2:]
        ratios = [big / (b / a * small) for big, small in zip(blocks[b], blocks[a])]
        print(f"t({b}) / ({b / a:g} t({a})): {statistics.median(ratios):.3f} [{min(ratios):.3f}-{max(ratios):.3f}]")


def compare(args):
    """This tree against args.against, alternating child processes (NUMBA_NUM_THREADS=1)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = {"this tree": here, "other tree": os.path.abspath(args.against)}
    runs = {label: [] for label in trees}
    for round_number in range(args.rounds):
        for label, tree in (list(trees.items()) if round_number % 2 == 0 else list(trees.items())[::-1]):
            env = dict(os.environ, NUMBA_NUM_THREADS="1", PYTHONPATH=tree)
            command = [sys.executable, os.path.join(tree, "benchmarks", "step_costs.py"), "--json", "--batches",
                       args.batches, "--steps", str(args.steps), "--model", args.model] + (["--mpi"] if args.mpi else [])
            out = subprocess.run(command, check=True, capture_output=True, text=True, env=env, cwd=tree).stdout
            runs[label].append(json.loads(out.strip().splitlines()[-1]))
    sizes = list(runs["this tree"][0])
    print(f"median over {args.rounds} alternating rounds of each round's median thread CPU ms per step "
          f"[min-max over rounds]; this tree {here}, other tree {trees['other tree']}")
    print("| batch | phase | this tree | other tree | this / other |")
    print("|---|---|---:|---:|---:|")
    for size in sizes:
        for phase in runs["this tree"][0][size]:
            mine = [run[size][phase] for run in runs["this tree"]]
            theirs = [run[size][phase] for run in runs["other tree"]]
            ratios = [a / b for a, b in zip(mine, theirs) if b] or [float("nan")]
            print(f"| {size} | {phase} | {statistics.median(mine):.3f} [{min(mine):.3f}-{max(mine):.3f}] | "
                  f"{statistics.median(theirs):.3f} [{min(theirs):.3f}-{max(theirs):.3f}] | "
                  f"{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}] |")


def in_process_ab(args):
    """Each change on and off in the same process, alternating blocks of 10 steps; medians of the blocks'
    median thread CPU ms per step, and of the per-block ratios."""
    from nbconv import functional, models
    from nbconv.distributed import SINGLE
    from nbconv.train import TrainConfig, make_optimizer

    data_rng = np.random.default_rng(0)
    images = data_rng.integers(0, 256, (4096, 1, 28, 28), dtype=np.uint8)
    labels = data_rng.integers(0, 10, 4096)
    batch_size = int(args.batches.split(",")[0])
    remembered = functional.conv_geometry, functional.pool_geometry
    plain = tuple(function.__wrapped__ for function in remembered)

    def trainer(flat):
        model = models.build(args.model, input_shape=(1, 28, 28), seed=0)
        optimizer = make_optimizer(TrainConfig(model=args.model), model.parameters())
        if not flat:
            optimizer._flat_step = lambda: False  # one kernel call a parameter, as before the flat buffers
        return model, optimizer

    cases = {"flat optimizer": {"on": (trainer(True), remembered), "off": (trainer(False), remembered)},
             "remembered geometry": {"on": (trainer(True), remembered), "off": (trainer(True), plain)}}
    from nbconv.nn import layers
    last_call_key = getattr(layers, "host_key", None)  # a tree from before the layers remembered calls has none
    if last_call_key is not None:
        cases["remembered layer calls"] = {"on": (trainer(True), remembered), "off": (trainer(True), remembered)}

    per_call = _per_call_costs()  # a tree from before the remembered plans has none
    if per_call is not None:
        cases["remembered plans, views, one BLAS switch a pass"] = {
            "on": (trainer(True), remembered), "off": (trainer(True), remembered)}

    def settle(case, name, geometry):
        functional.conv_geometry, functional.pool_geometry = geometry
        if per_call is not None:
            per_call(case == "remembered plans, views, one BLAS switch a pass" and name == "off")
        if last_call_key is not None:  # off: no key, so every call takes the validated path and remembers nothing
            layers.host_key = (lambda array: None) if (case, name) == ("remembered layer calls", "off") \
                else last_call_key
    rng = np.random.default_rng(1)
    print(f"batch {batch_size}, one process, {args.blocks} alternating blocks of 10 steps each way: median thread "
          f"CPU ms per step, on / off ratio median [min-max over blocks]")
    for case, settings in cases.items():
        times = {"on": {}, "off": {}}
        for name, ((model, optimizer), geometry) in settings.items():
            settle(case, name, geometry)
            phases(model, optimizer, SINGLE, images, labels, batch_size, 20, rng)  # warm-up
        for block in range(args.blocks):
            for name in (("on", "off") if block % 2 == 0 else ("off", "on")):
                (model, optimizer), geometry = settings[name]
                settle(case, name, geometry)
                cpu, _ = phases(model, optimizer, SINGLE, images, labels, batch_size, 10, rng)
                for phase in ("forward", "backward", "optimizer", "step"):
                    times[name].setdefault(phase, []).append(statistics.median(cpu[phase]))
        settle(case, "on", remembered)
        for phase in ("forward", "backward", "optimizer", "step"):
            on, off = times["on"][phase], times["off"][phase]
            ratios = [a / b for a, b in zip(on, off)]
            print(f"{case}: {phase} {1e3 * statistics.median(on):.3f} against {1e3 * statistics.median(off):.3f} ms: "
                  f"{statistics.median(ratios):.3f} [{min(ratios):.2f}-{max(ratios):.2f}]")


def _per_call_costs():
    """None in a tree without remembered convolution plans; else a switch(off) that puts back (off=True) or
    takes away (off=False) what the convolution dispatch and the BLAS switch cost per call before: the plan
    worked out on every call, the scratch views taken on every call, OpenBLAS switched to one thread and
    back around every kernel that multiplies matrices (no region around the pass)."""
    import contextlib

    from nbconv.kernels.cpu import blas, linear
    from nbconv.kernels.cpu.conv import dispatch, gemm, plan as planning, shift, strips, wide, winograd, \
        winograd_weight
    from nbconv.kernels.cpu.workspace import scratch
    from nbconv.nn import module
    if not hasattr(planning, "forget_plans"):
        return None
    remembered = dispatch.plan, dispatch.buffers, blas.single_threaded, module.single_threaded_blas
    users = (linear, gemm, shift, strips, wide, winograd, winograd_weight)

    def plan_every_call(pass_, input_shape, weight_shape, *hyper, dtype=np.float32, algorithm=None, threads=None):
        import numba
        return planning._worked_out(pass_, tuple(input_shape), tuple(weight_shape), *hyper, dtype, algorithm,
                                    numba.get_num_threads() if threads is None else threads)

    def views_every_call(chosen):
        return {buffer.name: scratch(buffer.slot, buffer.shape, buffer.dtype) for buffer in chosen.buffers}

    @contextlib.contextmanager
    def switch_every_call():
        before = blas.BLAS.get_threads()
        if before != 1:
            blas.BLAS.set_threads(1)
        try:
            yield
        finally:
            if before != 1:
                blas.BLAS.set_threads(before)

    def switch(off):
        plan, buffers, single_threaded, region = (plan_every_call, views_every_call, switch_every_call,
                                                  lambda array: contextlib.nullcontext()) if off else remembered
        dispatch.plan, dispatch.buffers, module.single_threaded_blas = plan, buffers, region
        for user in users:
            user.single_threaded = single_threaded
    return switch


if __name__ == "__main__":
    main()
