"""Compile every CUDA kernel the product launches for real GPUs, on any machine, and read its resources.

No GPU is needed: Numba lowers each kernel to PTX for a chosen compute capability with NVVM, and NVIDIA's
nvJitLink assembles the PTX into a cubin, running ptxas, whose report gives the registers per thread,
spill stores/loads (local memory) and static shared memory of the kernel. The toolkit parts come from the
package registry: `pip install "nbconv[cuda]"` (numba-cuda's `cu13` extra: NVVM, NVRTC, nvJitLink).

Which kernels with which signatures: those `nbconv.cuda_launches` records the product launching (run
under the simulator in a separate process, since this one must not be simulated). Every recorded kernel
is found again here, as a dispatcher of a module of nbconv.kernels.cuda, and every dispatcher found there
must have been recorded: `check_coverage` names any kernel that would otherwise go unchecked.

    python -m nbconv.cuda_compile            # table of every kernel for sm_80 and sm_90 (JSON with --json)
"""
import importlib
import json
import os
import pkgutil
import re
import subprocess
import sys
import tempfile
import types as pytypes
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np

from .occupancy import GPUS, theoretical_occupancy

COMPUTE_CAPABILITIES = ((8, 0), (9, 0))
PACKAGE = "nbconv.kernels.cuda"


class ToolkitUnavailable(RuntimeError):
    """NVVM or nvJitLink cannot be loaded: install `nbconv[cuda]`."""


def toolkit_status():
    """(available, reason): whether kernels can be compiled for GPUs here (NVVM and nvJitLink load)."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return False, "this process runs Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1); compile in another"
    try:
        from cuda.bindings import nvjitlink
        from numba.cuda.cudadrv import nvvm
        nvvm.NVVM()
        nvjitlink.version()
    except Exception as error:  # any failure to load means: not available, and why
        return False, (f"the CUDA compiler libraries are not installed ({' '.join(str(error).split())[:200]}); "
                       'install them with `pip install "nbconv[cuda]"` (numba-cuda[cu13])')
    return True, "NVVM and nvJitLink available"


@dataclass
class KernelBuild:
    """One kernel, one signature, one compute capability: what ptxas reported, or the error."""
    launcher: str
    kernel: str
    signature: str
    cc: tuple
    threads_per_block: int
    registers: int = 0
    spill_store_bytes: int = 0
    spill_load_bytes: int = 0
    stack_bytes: int = 0
    shared_bytes: int = 0
    local_bytes: int = 0
    occupancy: float = 0.0
    blocks_per_sm: int = 0
    limited_by: str = ""
    error: str = ""
    log: str = field(default="", repr=False)


def numba_type(description):
    """The Numba type for a JSON argument description from nbconv.cuda_launches.argument_type."""
    from numba.core import types
    from numba.np import numpy_support
    if "scalar" in description:
        return getattr(types, description["scalar"])
    return types.Array(numpy_support.from_dtype(np.dtype(description["dtype"])), description["ndim"],
                       description["layout"])


def kernel_dispatchers():
    """{(module, qualname): [dispatcher, ...]} for every @cuda.jit kernel (not device function) reachable
    from the modules of nbconv.kernels.cuda: module globals, and the values of their dicts, tuples and lists
    (kernels built per element type)."""
    from numba.cuda.dispatcher import CUDADispatcher
    package = importlib.import_module(PACKAGE)
    found = {}

    def visit(value, depth):
        if isinstance(value, CUDADispatcher):
            if not value.targetoptions.get("device"):
                key = (value.py_func.__module__, value.py_func.__qualname__)
                if all(existing is not value for existing in found.get(key, [])):
                    found.setdefault(key, []).append(value)
        elif depth < 2 and isinstance(value, dict):
            for item in value.values():
                visit(item, depth + 1)
        elif depth < 2 and isinstance(value, (tuple, list)):
            for item in value:
                visit(item, depth + 1)

    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{PACKAGE}.{info.name}")
        for value in vars(module).values():
            visit(value, 0)
    return found


def resolve(launch, dispatchers):
    """The dispatcher a recorded launch ran (matched by module, qualname and closed-over Numba types)."""
    from .cuda_launches import closure_types
    key = (launch["module"], launch["qualname"])
    matches = [d for d in dispatchers.get(key, []) if closure_types(d.py_func) == launch["closure_types"]]
    if len(matches) != 1:
        raise LookupError(f"kernel {launch['module']}.{launch['qualname']} (closing over "
                          f"{launch['closure_types'] or 'no types'}) matches {len(matches)} dispatchers in "
                          f"{PACKAGE}; keep each kernel reachable from its module's globals")
    return matches[0]


def check_coverage(recording, dispatchers):
    """Messages naming each public launcher the workload never called and each kernel never launched."""
    problems = [f"{PACKAGE}.{name}: no launch recorded: add a call that reaches it to nbconv/cuda_launches.py "
                "(_workload), so it is compiled for real GPUs" for name in recording["launchers"]
                if name not in recording["launchers_called"]]
    launched = {(launch["module"], launch["qualname"], tuple(launch["closure_types"]))
                for launch in recording["launches"]}
    from .cuda_launches import closure_types
    for (module, qualname), candidates in sorted(dispatchers.items()):
        for dispatcher in candidates:
            if (module, qualname, tuple(closure_types(dispatcher.py_func))) not in launched:
                problems.append(f"kernel {module}.{qualname} {closure_types(dispatcher.py_func) or ''}: never "
                                "launched by nbconv/cuda_launches.py's workload, so no signature is known")
    return problems


@contextmanager
def _target_device(cc):
    """Stand in a device of compute capability `cc` for numba-cuda's lookups of the current device.

    Compiling a kernel for a given cc needs no GPU, but numba-cuda compiles the device functions a kernel
    calls for "the current device"; without one, that lookup is answered with the target here.
    """
    from numba.cuda import dispatcher
    original = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=cc)
    try:
        yield
    finally:
        dispatcher.get_current_device = original


def link_cubin(ptx, cc, name):
    """(cubin bytes, ptxas/nvJitLink log) for PTX, assembled for sm_<cc>."""
    from cuda.bindings import nvjitlink
    handle = nvjitlink.create(2, [f"-arch=sm_{cc[0]}{cc[1]}", "-verbose"])
    try:
        data = ptx.encode()
        try:
            nvjitlink.add_data(handle, nvjitlink.InputType.PTX, data, len(data), name)
            nvjitlink.complete(handle)
        except nvjitlink.nvJitLinkError as error:
            raise RuntimeError(f"{error}: {_log(nvjitlink.get_error_log_size, nvjitlink.get_error_log, handle)}")
        cubin = bytearray(nvjitlink.get_linked_cubin_size(handle))
        nvjitlink.get_linked_cubin(handle, cubin)
        return bytes(cubin), _log(nvjitlink.get_info_log_size, nvjitlink.get_info_log, handle)
    finally:
        nvjitlink.destroy(handle)


def _log(size_of, read, handle):
    size = size_of(handle)
    if not size:
        return ""
    buffer = bytearray(size)
    read(handle, buffer)
    return buffer.decode(errors="replace").rstrip("\x00")


_PTXAS_SPILLS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_LINKER_USAGE = re.compile(r"used (\d+) registers.*?(\d+) stack, (\d+) bytes smem.*?(\d+) bytes lmem")


def parse_resources(log):
    """{registers, stack, spill stores/loads, shared, local bytes} from nvJitLink's verbose log of one kernel."""
    spills, usage = _PTXAS_SPILLS.search(log), _LINKER_USAGE.search(log)
    if not spills or not usage:
        raise ValueError(f"no resource usage in the linker's log: {log[:500]!r}")
    return {"registers": int(usage.group(1)), "stack_bytes": int(spills.group(1)),
            "spill_store_bytes": int(spills.group(2)), "spill_load_bytes": int(spills.group(3)),
            "shared_bytes": int(usage.group(3)), "local_bytes": int(usage.group(4))}


def compile_launch(dispatcher, launch, cc):
    """Compile one recorded launch for compute capability `cc`; a KernelBuild (with .error on failure)."""
    from numba import cuda
    argtypes = tuple(numba_type(description) for description in launch["args"])
    threads = int(np.prod(launch["block"]))
    build = KernelBuild(launcher=launch["launcher"] or "", kernel=f"{launch['module']}.{launch['qualname']}",
                        signature="(" + ", ".join(str(t) for t in argtypes) + ")", cc=tuple(cc),
                        threads_per_block=threads)
    options = dispatcher.targetoptions
    try:
        with _target_device(tuple(cc)):
            ptx, _ = cuda.compile(dispatcher.py_func, argtypes, cc=tuple(cc), device=False, abi="numba",
                                  output="ptx", fastmath=bool(options.get("fastmath")),
                                  lineinfo=bool(options.get("lineinfo")),
                                  launch_bounds=options.get("launch_bounds"))
        _, build.log = link_cubin(ptx, cc, launch["qualname"])
        for name, value in parse_resources(build.log).items():
            setattr(build, name, value)
    except Exception as error:  # reported per kernel, so one failure does not hide the others
        build.error = f"{type(error).__name__}: {' '.join(str(error).split())[:1000]}"
        return build
    gpu = GPUS.get(tuple(cc))
    if gpu is not None:
        result = theoretical_occupancy(threads, build.registers, gpu.kernel_shared_bytes(build.shared_bytes), gpu)
        build.occupancy, build.blocks_per_sm, build.limited_by = result.occupancy, result.blocks, result.limited_by
    return build


def record_launches(env=None):
    """Run nbconv.cuda_launches in a simulated subprocess; its recording (see that module)."""
    from .cuda_launches import environment
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "launches.json")
        completed = subprocess.run([sys.executable, "-m", "nbconv.cuda_launches", path], env=environment(env),
                                   capture_output=True, text=True)
        if completed.returncode != 0:
            raise RuntimeError(f"recording the CUDA launches failed:\n{completed.stdout}\n{completed.stderr}")
        with open(path) as recording:
            return json.load(recording)


def compile_all(recording, ccs=COMPUTE_CAPABILITIES):
    """(builds, problems): every recorded launch compiled for every cc, and coverage problems."""
    available, reason = toolkit_status()
    if not available:
        raise ToolkitUnavailable(reason)
    dispatchers = kernel_dispatchers()
    problems = check_coverage(recording, dispatchers)
    builds = []
    for launch in recording["launches"]:
        try:
            dispatcher = resolve(launch, dispatchers)
        except LookupError as error:
            problems.append(str(error))
            continue
        for cc in ccs:
            builds.append(compile_launch(dispatcher, launch, cc))
    return builds, problems


def compile_environment(base=None):
    """The environment of a compiling process: never the simulator, whatever the caller runs."""
    from .kernels.cuda.launch import GPU_BLOCKS_VARIABLE
    env = dict(os.environ if base is None else base)
    env["NUMBA_ENABLE_CUDASIM"] = "0"
    env.pop(GPU_BLOCKS_VARIABLE, None)
    return env


def run(ccs=COMPUTE_CAPABILITIES, env=None, timeout=1800):
    """Record and compile in fresh processes (safe to call from a simulated one, e.g. the tests):
    {"available", "reason", "builds": [KernelBuild as dict], "problems": [...]}."""
    ccs_text = ",".join(f"{major}.{minor}" for major, minor in ccs)
    completed = subprocess.run([sys.executable, "-m", "nbconv.cuda_compile", "--json", "--cc", ccs_text],
                               env=compile_environment(env), capture_output=True, text=True, timeout=timeout)
    if completed.returncode not in (0, 1, 3):
        raise RuntimeError(f"nbconv.cuda_compile failed ({completed.returncode}):\n{completed.stdout}\n"
                           f"{completed.stderr}")
    return json.loads(completed.stdout)


def table(builds, cc=(9, 0)):
    """A markdown table of the builds for one compute capability (occupancy on that cc's GPU)."""
    gpu = GPUS[tuple(cc)]
    lines = [f"| launcher | kernel | dtype | threads/block | registers | spill st/ld (B) | shared (B, cubin) | "
             f"blocks/SM | occupancy on {gpu.name} | limited by |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for build in builds:
        if tuple(build["cc"]) != tuple(cc):
            continue
        kernel = build["kernel"].replace(f"{PACKAGE}.", "")
        dtype = (re.findall(r"float(?:32|64)", build["signature"]) or [""])[0]
        if build["error"]:
            lines.append(f"| {build['launcher']} | {kernel} | {dtype} | {build['threads_per_block']} | "
                         f"FAILED: {build['error'][:80]} | | | | | |")
            continue
        lines.append(f"| {build['launcher']} | {kernel} | {dtype} | {build['threads_per_block']} | "
                     f"{build['registers']} | {build['spill_store_bytes']}/{build['spill_load_bytes']} | "
                     f"{build['shared_bytes']} | {build['blocks_per_sm']} | {build['occupancy']:.0%} | "
                     f"{build['limited_by']} |")
    return "\n".join(lines)


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(prog="python -m nbconv.cuda_compile", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print JSON (builds and problems) instead of a table")
    parser.add_argument("--cc", default="8.0,9.0", help="compute capabilities, e.g. 8.0,9.0")
    options = parser.parse_args(argv)
    ccs = tuple(tuple(int(part) for part in item.split(".")) for item in options.cc.split(","))
    available, reason = toolkit_status()
    if not available:
        result = {"available": False, "reason": reason, "builds": [], "problems": []}
        print(json.dumps(result) if options.json else f"cannot compile for GPUs here: {reason}")
        return 3
    try:
        recording = record_launches()
    except RuntimeError as error:  # the workload itself failed: say so, naming what failed
        builds, problems = [], [str(error)]
    else:
        builds, problems = compile_all(recording, ccs)
    rows = []
    for build in builds:
        row = asdict(build)
        row.pop("log")
        rows.append(row)
    failed = problems or any(build.error for build in builds)
    if options.json:
        print(json.dumps({"available": True, "reason": reason, "builds": rows, "problems": problems}))
    else:
        for cc in ccs:
            print(f"\nsm_{cc[0]}{cc[1]}:\n" + table(rows, cc))
        for problem in problems:
            print(f"PROBLEM: {problem}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
