"""Where a command's JIT seconds go: every Numba overload a command compiles or loads from the cache, with
its time, grouped by where the kernel lives.

Runs an `nbconv` command in this process (the start-up JIT helper of `nbconv train` switched off, so that
every compile is seen here), records Numba's compile events (exclusive of the kernels compiled inside them)
and times each cache load, then prints a table and one JSON line. Run it with an empty NUMBA_CACHE_DIR for the
cold picture, again for the warm one:

    NUMBA_CACHE_DIR=$(mktemp -d) python benchmarks/jit_profile.py train resnet20 \
        --dataset synthetic:3x32x32:10:64:64 --epochs 1 --batch-size 64 --out /tmp/r20.npz

With JIT_PROFILE_TIMELINE set to a file name, each process appends to it one JSON line per top-level
compile (start and end in seconds of the epoch, the function, its CPU seconds) and one for itself
("(process)": its start and end, and the first step's figures); benchmarks/jit_timeline.py prints them as
one timeline.

To see the split that a user's cold `nbconv train` makes, set JIT_PROFILE_HELPER to a file name: the JIT
helper then runs too, itself under this profiler (`jit_profile.py warmup MODEL CxHxW`), and writes its report
to that file; the main process's report adds the seconds it waited for the helper. The helper alone:

    NUMBA_CACHE_DIR=$(mktemp -d) python benchmarks/jit_profile.py warmup resnet20 3x32x32

CPU seconds (process_time) are the figures to trust on a shared machine.
"""
import time

STARTED, STARTED_CPU, STARTED_EPOCH = time.perf_counter(), time.process_time(), time.time()

import collections  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402

from numba.core import dispatcher, event  # noqa: E402

IMPORTED_NUMBA_CPU = time.process_time() - STARTED_CPU


def group_of(module):
    """The family a kernel's module belongs to, for the summary."""
    if module.startswith("nbconv.kernels.cpu.conv"):
        return "convolution"
    if module.startswith("nbconv.data"):
        return "data pipeline"
    if module.startswith(("nbconv.kernels.cpu.optim", "nbconv.optim", "nbconv.flat_parameters")):
        return "optimizer"
    if module.startswith("nbconv.kernels.cpu"):
        return "other layers"
    return "other"


class CompileRecorder(event.Listener):
    """Numba's 'numba:compile' events as exclusive CPU seconds per (module, function, signature); and the
    top-level compiles (those no other compile is inside) as a timeline: (start, end) in seconds of the
    epoch, the function, its inclusive CPU seconds."""

    def __init__(self):
        self.stack = []  # [start cpu, nested cpu, start wall]
        self.compiles = []  # (module, name, signature, exclusive cpu s)
        self.timeline = []  # (start, end, module.name, inclusive cpu s) of each top-level compile

    def on_start(self, ev):
        self.stack.append([time.process_time(), 0.0, time.time()])

    def on_end(self, ev):
        start, nested, started = self.stack.pop()
        spent = time.process_time() - start
        if self.stack:
            self.stack[-1][1] += spent
        function = ev.data["dispatcher"].py_func
        self.compiles.append((function.__module__, function.__qualname__, str(ev.data["args"]), spent - nested))
        if not self.stack:
            self.timeline.append((started, time.time(), f"{function.__module__}.{function.__qualname__}", spent))


class PassRecorder(event.Listener):
    """Numba's 'numba:run_pass' events as exclusive CPU seconds per compiler pass; and the CPU seconds spent
    holding LLVM's lock (inside llvmlite's calls: IR parsing, optimisation, code generation), counted apart."""

    def __init__(self):
        self.stack = []
        self.by_pass = collections.Counter()
        self.llvm_depth, self.llvm_started, self.llvm_cpu = 0, 0.0, 0.0

    def on_start(self, ev):
        if ev.kind == "numba:llvm_lock":
            if self.llvm_depth == 0:
                self.llvm_started = time.process_time()
            self.llvm_depth += 1
        else:
            self.stack.append([time.process_time(), 0.0])

    def on_end(self, ev):
        if ev.kind == "numba:llvm_lock":
            self.llvm_depth -= 1
            if self.llvm_depth == 0:
                self.llvm_cpu += time.process_time() - self.llvm_started
            return
        start, nested = self.stack.pop()
        spent = time.process_time() - start
        if self.stack:
            self.stack[-1][1] += spent
        self.by_pass[ev.data["name"].split(" [")[0]] += spent - nested


class LoadTimer:
    """Dispatcher.compile wrapped: the CPU seconds of each call that the cache answered."""

    def __init__(self):
        self.loads = []  # (module, name, cpu s)
        self.original = dispatcher.Dispatcher.compile

    def install(self):
        original, loads = self.original, self.loads

        def compile(self, sig):
            hits = sum(self._cache_hits.values())
            start = time.process_time()
            result = original(self, sig)
            if sum(self._cache_hits.values()) > hits:
                loads.append((self.py_func.__module__, self.py_func.__qualname__, time.process_time() - start))
            return result
        dispatcher.Dispatcher.compile = compile


def watch_first_step(found):
    """Record into `found` the wall and CPU seconds since start at the end of the first optimizer step of
    `nbconv train` (the training step's last call)."""
    import nbconv_cli.train as cli_train
    make_optimizer = cli_train.make_optimizer

    def watched(*args, **kwargs):
        optimizer = make_optimizer(*args, **kwargs)
        step = optimizer.step

        def first_step(*step_args, **step_kwargs):
            result = step(*step_args, **step_kwargs)
            if not found:
                found.update(first_step_s=round(time.perf_counter() - STARTED, 2),
                             first_step_cpu_s=round(time.process_time() - STARTED_CPU, 2))
            return result
        optimizer.step = first_step
        return optimizer
    cli_train.make_optimizer = watched


def profiled_helper(report, waited):
    """jit_warmup's start and wait replaced: the helper runs under this profiler, its report into `report`,
    and `waited` collects the wall seconds the main process waits for it and the helper's jobs it takes."""
    import os
    from nbconv import jit_warmup
    start, wait, run_job = jit_warmup.start, jit_warmup.wait, jit_warmup.run_job

    def recorded_job(job, *args):  # in this (the main) process: the helper's jobs it took
        waited.setdefault("main_took", []).append("/".join(str(part) for part in job if part is not None))
        return run_job(job, *args)

    def profiled_start(spec, device="cpu", input_shape=(1, 28, 28)):
        waited["helper_asked_at_s"] = round(time.perf_counter() - STARTED, 2)
        with open(report, "w") as out:
            helper = start(spec, device, input_shape, program=(os.path.abspath(__file__), "warmup"), stdout=out)
        if helper is not None:
            waited["helper_started_at_s"] = round(time.perf_counter() - STARTED, 2)
        return helper

    def timed_wait(helper):
        began = time.perf_counter()
        wait(helper)
        waited["helper_wait_s"] = round(time.perf_counter() - began, 2)
        waited["helper_done_at_s"] = round(time.perf_counter() - STARTED, 2)
    jit_warmup.start, jit_warmup.wait, jit_warmup.run_job = profiled_start, timed_wait, recorded_job


def main(argv):
    import os
    from nbconv import jit_warmup
    waited = {}
    helper_report = os.environ.get("JIT_PROFILE_HELPER")
    if argv and argv[0] == "warmup":
        from nbconv import startup  # as `python -m nbconv.jit_warmup` does
        startup.skip_numba_optional_imports()
        startup.skip_numba_scipy_blas()
        startup.skip_numba_extensions()
        jit_warmup._become_helper()
    elif helper_report:
        profiled_helper(helper_report, waited)
    else:
        jit_warmup.start = lambda *args, **kwargs: None  # every compile in this process, where it is recorded
    first_step = {}
    if argv and argv[0] != "warmup":
        watch_first_step(first_step)
    recorder, loads = CompileRecorder(), LoadTimer()
    event.register("numba:compile", recorder)
    passes = PassRecorder()
    event.register("numba:run_pass", passes)
    event.register("numba:llvm_lock", passes)
    loads.install()
    from nbconv_cli.main import app
    from nbconv.startup import skip_numba_scipy_blas
    skip_numba_scipy_blas()
    imported_cpu = time.process_time() - STARTED_CPU
    try:
        if argv and argv[0] == "warmup":
            jit_warmup.warm_up(argv[1], tuple(int(size) for size in argv[2].split("x")), *argv[3:4])
        else:
            app(argv, standalone_mode=False)
    finally:
        total_cpu, total_wall = time.process_time() - STARTED_CPU, time.perf_counter() - STARTED
        by_group = collections.defaultdict(lambda: [0, 0.0])
        for module, name, signature, spent in recorder.compiles:
            by_group[group_of(module)][0] += 1
            by_group[group_of(module)][1] += spent
        top = sorted(recorder.compiles, key=lambda row: -row[3])
        print("\ncompiled overloads, exclusive CPU s (largest first):", file=sys.stderr)
        for module, name, signature, spent in top:
            print(f"  {spent:7.2f}  {module}.{name} {signature[:110]}", file=sys.stderr)
        print("\ncache loads over 0.05 CPU s:", file=sys.stderr)
        for module, name, spent in sorted(loads.loads, key=lambda row: -row[2]):
            if spent > 0.05:
                print(f"  {spent:7.2f}  {module}.{name}", file=sys.stderr)
        print("\ncompiler passes, exclusive CPU s (largest first):", file=sys.stderr)
        for name, spent in passes.by_pass.most_common(12):
            print(f"  {spent:7.2f}  {name}", file=sys.stderr)
        load_cpu = sum(row[2] for row in loads.loads)
        timeline = os.environ.get("JIT_PROFILE_TIMELINE")
        if timeline:  # one JSON line per top-level compile, appended: both processes may write to the file
            role = "helper" if argv and argv[0] == "warmup" else "main"
            with open(timeline, "a") as out:
                for started, ended, name, spent in recorder.timeline:
                    out.write(json.dumps({"process": role, "pid": os.getpid(), "start": started, "end": ended,
                                          "name": name, "cpu_s": round(spent, 3)}) + "\n")
                out.write(json.dumps({"process": role, "pid": os.getpid(), "start": STARTED_EPOCH,
                                      "end": time.time(), "name": "(process)", **first_step, **waited}) + "\n")
        print(json.dumps({
            "wall_s": round(total_wall, 2), "cpu_s": round(total_cpu, 2), **first_step, **waited,
            "import_numba_cpu_s": round(IMPORTED_NUMBA_CPU, 2), "import_cpu_s": round(imported_cpu, 2),
            "compiled": len(recorder.compiles), "compile_cpu_s": round(sum(r[3] for r in recorder.compiles), 2),
            "compiled_by_group": {group: [count, round(spent, 2)] for group, (count, spent) in by_group.items()},
            "llvm_cpu_s": round(passes.llvm_cpu, 2), "cache_loads": len(loads.loads),
            "cache_load_cpu_s": round(load_cpu, 2)}))


if __name__ == "__main__":
    main(sys.argv[1:])
