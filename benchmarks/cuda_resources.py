"""Registers, spills, shared memory and theoretical H100 occupancy of every CUDA kernel nbconv launches.

No GPU needed: each kernel is compiled for sm_90 (and sm_80) the way `tests/test_cuda_compile.py` does it
(nbconv.cuda_compile), and the occupancy follows from the launch configuration nbconv records for it.

    python benchmarks/cuda_resources.py            # print the table
    python benchmarks/cuda_resources.py --write    # and write it into benchmarks/RESULTS.md
"""
import argparse
import os
import platform
import re
import sys
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from sections import replace_section  # noqa: E402

from nbconv import cuda_compile  # noqa: E402
from nbconv.occupancy import GPUS  # noqa: E402

SECTION = "benchmarks/cuda_resources.py"


def _pair(values):
    """'a' when both dtypes agree, else 'a / b' (float32 / float64)."""
    values = [str(value) for value in values]
    return values[0] if len(set(values)) == 1 else " / ".join(values)


def _main_dtype(signature):
    """'float32' or 'float64': the first floating type in a kernel's signature."""
    found = re.search(r"float(?:32|64)", signature)
    return found.group() if found else "float32"


def table(builds, cc):
    """One row per kernel (float32 / float64 where they differ) for one compute capability."""
    gpu = GPUS[cc]
    rows = defaultdict(dict)
    for build in builds:
        if tuple(build["cc"]) == cc and not build["error"]:
            # the first floating type in the signature is the main array's (scratch arguments, such as the
            # weight gradient's float64 bias partials, may take another)
            dtype = _main_dtype(build["signature"])
            rows[(build["launcher"], build["kernel"].replace(f"{cuda_compile.PACKAGE}.", ""))].setdefault(dtype, build)
    lines = [f"| launcher | kernel | threads/block | registers | spills st/ld (B) | shared (B) | blocks/SM | "
             f"occupancy on {gpu.name.split()[0]} | limited by |", "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for (launcher, kernel), by_dtype in sorted(rows.items()):
        found = [by_dtype[dtype] for dtype in ("float32", "float64") if dtype in by_dtype]
        lines.append("| " + " | ".join([
            launcher, f"`{kernel}`", _pair(b["threads_per_block"] for b in found),
            _pair(b["registers"] for b in found),
            _pair(f"{b['spill_store_bytes']}/{b['spill_load_bytes']}" for b in found),
            _pair(b["shared_bytes"] for b in found), _pair(b["blocks_per_sm"] for b in found),
            _pair(f"{b['occupancy']:.0%}" for b in found), _pair(b["limited_by"] for b in found)]) + " |")
    return "\n".join(lines)


def report(result):
    import numba
    builds = result["builds"]
    failures = [b for b in builds if b["error"]]
    sm80 = [b for b in builds if tuple(b["cc"]) == (8, 0) and not b["error"]]
    lines = [
        "## CUDA kernel resources (compiled for sm_90 without a GPU)", "",
        "Command: `python benchmarks/cuda_resources.py --write` (numba-cuda "
        f"{_version('numba-cuda')}, numba {numba.__version__}, NVVM/nvJitLink from numba-cuda[cu13], "
        f"Python {platform.python_version()}). Every kernel nbconv launches, with the signatures it launches "
        "(recorded by `nbconv.cuda_launches`), compiled to PTX by NVVM and assembled by nvJitLink's ptxas for "
        "sm_90; registers, spills and shared memory are ptxas's. Where float32 and float64 differ a cell reads "
        "`float32 / float64`. Shared memory is the cubin's, which on sm_90 includes the 1 KB the system "
        "reserves in every block using shared memory. Occupancy is the theoretical one on an H100 SXM "
        "(64K registers, 2048 threads, 32 blocks, 228 KB shared memory an SM; registers allocated 256 a warp) "
        "for nbconv's threads per block (`nbconv.occupancy`).", "",
        table(builds, (9, 0)), "",
        f"sm_80 (A100) builds: {len(sm80)} signatures, at most {max((b['registers'] for b in sm80), default=0)} "
        f"registers a thread, {sum(b['spill_store_bytes'] + b['spill_load_bytes'] for b in sm80)} bytes spilled "
        "in all. Failures to compile: " + (", ".join(f"{b['kernel']} sm_{b['cc'][0]}{b['cc'][1]}" for b in failures)
                                           or "none") + ".",
    ]
    if result["problems"]:
        lines += ["", "Coverage problems:"] + [f"- {problem}" for problem in result["problems"]]
    return "\n".join(lines) + "\n"


def _version(distribution):
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "?"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help="write the table into benchmarks/RESULTS.md")
    options = parser.parse_args(argv)
    result = cuda_compile.run()
    if not result["available"]:
        print(f"cannot compile for GPUs here: {result['reason']}")
        return 3
    text = report(result)
    print(text)
    if options.write:
        replace_section(os.path.join(HERE, "RESULTS.md"), SECTION, text)
    return 1 if result["problems"] or any(b["error"] for b in result["builds"]) else 0


if __name__ == "__main__":
    sys.exit(main())
