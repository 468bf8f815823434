"""Every CUDA kernel, with every signature the product launches, compiled for real GPUs (sm_80, sm_90):
a kernel that fails to compile, a launcher or kernel with no recorded signature, or a spill in a
convolution kernel fails here. Needs the toolkit extra (`pip install "nbconv[cuda]"`); skipped without."""
import json
import os
import re
import subprocess
import sys
import types

import numpy as np
import pytest

from nbconv import cuda_compile, cuda_launches
from nbconv.occupancy import A100, H100, theoretical_occupancy


@pytest.fixture(scope="module")
def compiled():
    """The builds of every recorded launch for sm_80 and sm_90, made in a fresh unsimulated process."""
    result = cuda_compile.run()
    if not result["available"]:
        pytest.skip(f"cannot compile for GPUs here: {result['reason']}")
    return result


def test_every_launcher_and_kernel_has_a_recorded_signature(compiled):
    assert compiled["problems"] == [], "\n".join(compiled["problems"])


def test_every_kernel_compiles_for_sm80_and_sm90(compiled):
    failures = [f"{build['kernel']} {build['signature']} for sm_{build['cc'][0]}{build['cc'][1]}: {build['error']}"
                for build in compiled["builds"] if build["error"]]
    assert failures == [], "\n".join(failures)
    from nbconv.kernels import cuda as cuda_kernels  # (simulated here: only the names are used)
    for launcher in cuda_kernels.__all__:
        for cc in ([8, 0], [9, 0]):
            for dtype in ("float32", "float64"):
                assert any(build["launcher"] == launcher and build["cc"] == cc and _main_dtype(build) == dtype
                           for build in compiled["builds"]), (launcher, cc, dtype)


def _main_dtype(build):
    """The first floating type of a build's signature: its main array's (scratch arrays may differ)."""
    found = re.search(r"float(?:32|64)", build["signature"])
    return found.group() if found else None


FUSED_LAUNCHERS = ("linear_backward_weight_bias", "linear_relu_forward", "linear_relu_backward_input",
                   "linear_relu_backward_weight_bias", "sgd_update_flat", "adam_update_flat")


def test_convolution_and_fused_kernels_do_not_spill(compiled):
    convolutions = [build for build in compiled["builds"]
                    if "conv" in build["launcher"] or build["launcher"] in FUSED_LAUNCHERS]
    assert {build["launcher"] for build in convolutions} >= set(FUSED_LAUNCHERS) | {"conv2d_backward_weight_bias"}
    assert convolutions
    spilling = [f"{build['kernel']} {build['signature']} sm_{build['cc'][0]}{build['cc'][1]}: "
                f"{build['spill_store_bytes']} B stored, {build['spill_load_bytes']} B loaded"
                for build in convolutions if build["spill_store_bytes"] or build["spill_load_bytes"]]
    assert spilling == [], "\n".join(spilling)


def test_resources_are_plausible(compiled):
    for build in compiled["builds"]:
        assert 1 <= build["registers"] <= 255, build
        assert 0 < build["occupancy"] <= 1, build
        if build["launcher"] in ("conv2d_forward", "conv2d_backward_input") and "_build.<locals>" in build["kernel"]:
            itemsize = 4 if "float32" in build["signature"] else 8
            reserved = 1024 if build["cc"] == [9, 0] else 0  # sm_90 cubins count the system's 1 KB a block
            expected = set()
            for steps, rows, columns in ((8, 64, 64), (8, 16, 128)):  # the GPU's tall and narrow tile shapes
                covers = steps * columns if build["launcher"] == "conv2d_backward_input" else 0  # int8 flags
                expected.add(steps * (rows + columns) * itemsize + covers + reserved)
            assert build["shared_bytes"] in expected, build


# ----------------------------------------------------------------------------- without the toolkit

def test_recorder_notes_each_launch_with_gpu_blocks_and_launcher():
    """The recording process: the simulator on, GPU-sized blocks; every public launcher reached."""
    env = cuda_launches.environment()
    with_gpu_blocks = subprocess.run(
        [sys.executable, "-c", "import json, nbconv.cuda_launches as r; print(json.dumps(r.record()))"],
        env=env, capture_output=True, text=True, check=True)
    recording = json.loads(with_gpu_blocks.stdout)
    assert set(recording["launchers_called"]) == set(recording["launchers"])
    forward = [launch for launch in recording["launches"] if launch["launcher"] == "conv2d_forward"]
    tiled = [launch for launch in forward if "_build.<locals>" in launch["qualname"]]
    # both element types, both tile shapes (their sizes are closed over too), and the depthwise kernels
    assert {launch["closure_types"][-1] for launch in tiled} == {"float32", "float64"}
    assert len({tuple(launch["closure_types"]) for launch in tiled}) == 4
    assert any("_build_depthwise" in launch["qualname"] for launch in forward)
    # the GPU's blocks, not the simulator's: 16 x 16 and 32 x 8 threads
    assert {tuple(launch["block"]) for launch in tiled} == {(16, 16, 1), (32, 8, 1)}
    relu = next(launch for launch in recording["launches"] if launch["launcher"] == "relu_forward")
    assert relu["args"][0] in ({"dtype": "float32", "ndim": 1, "layout": "C"},
                               {"dtype": "float64", "ndim": 1, "layout": "C"})
    sgd = next(launch for launch in recording["launches"] if launch["launcher"] == "sgd_update")
    assert sgd["args"][3:] == [{"scalar": "float64"}] * 3 + [{"scalar": "int64"}]


def test_argument_types_follow_numbas_device_array_rule():
    assert cuda_launches.argument_type(np.zeros((2, 3), np.float32)) == {"dtype": "float32", "ndim": 2, "layout": "C"}
    assert cuda_launches.argument_type(np.zeros((2, 3)).T)["layout"] == "F"
    assert cuda_launches.argument_type(np.zeros((4, 4))[:, ::2])["layout"] == "A"
    assert cuda_launches.argument_type(np.broadcast_to(np.zeros(3), (2, 3)))["layout"] == "A"
    assert cuda_launches.argument_type(3) == {"scalar": "int64"}
    assert cuda_launches.argument_type(True) == {"scalar": "boolean"}
    assert cuda_launches.argument_type(0.5) == {"scalar": "float64"}
    assert cuda_launches.argument_type(np.float32(0.5)) == {"scalar": "float32"}
    with pytest.raises(TypeError, match="str"):
        cuda_launches.argument_type("x")


def _kernel_factory(element_type):
    def kernel(output):
        output[0] = element_type
    return kernel


def test_coverage_names_launchers_and_kernels_without_a_signature():
    from numba import float32, float64
    launched, forgotten = _kernel_factory(float32), _kernel_factory(float64)
    dispatchers = {("m", "k"): [types.SimpleNamespace(py_func=launched), types.SimpleNamespace(py_func=forgotten)]}
    recording = {"launchers": ["a_forward", "a_backward"], "launchers_called": ["a_forward"],
                 "launches": [{"module": "m", "qualname": "k", "closure_types": ["float32"]}]}
    problems = cuda_compile.check_coverage(recording, dispatchers)
    assert len(problems) == 2
    assert "a_backward" in problems[0] and "no launch recorded" in problems[0]
    assert "m.k" in problems[1] and "float64" in problems[1] and "never launched" in problems[1]


def test_linker_log_parsing():
    log = ("ptxas info    : Compiling entry function 'k' for 'sm_90'\n"
           "ptxas         .     8 bytes stack frame, 12 bytes spill stores, 16 bytes spill loads\n"
           "ptxas info    : Used 82 registers, used 1 barriers\n"
           "info    : used 82 registers, used 1 barriers, 8 stack, 2048 bytes smem, 952 bytes cmem[0], 24 bytes lmem\n")
    assert cuda_compile.parse_resources(log) == {"registers": 82, "stack_bytes": 8, "spill_store_bytes": 12,
                                                 "spill_load_bytes": 16, "shared_bytes": 2048, "local_bytes": 24}
    with pytest.raises(ValueError, match="no resource usage"):
        cuda_compile.parse_resources("error")


@pytest.mark.parametrize("threads,registers,shared,gpu,blocks,occupancy,limited_by", [
    (256, 32, 0, H100, 8, 1.0, "threads"),            # 8 blocks x 8 warps fill the 64 warp slots
    (256, 64, 0, H100, 4, 0.5, "registers"),          # 2048 registers a warp: 32 warps' worth
    (256, 82, 2048, H100, 2, 0.25, "registers"),      # 82 x 32 = 2624 -> 2816 a warp: 23 warps -> 2 blocks
    (128, 16, 0, H100, 16, 1.0, "threads"),
    (32, 16, 0, H100, 32, 0.5, "blocks"),             # at most 32 blocks an SM
    (1024, 16, 100 * 1024, H100, 2, 1.0, "threads"),  # (100 + 1) KB a block: 2 fit in 228 KB
    (512, 16, 100 * 1024, A100, 1, 0.25, "shared memory"),  # 164 KB on an A100: 1 block
])
def test_theoretical_occupancy(threads, registers, shared, gpu, blocks, occupancy, limited_by):
    result = theoretical_occupancy(threads, registers, shared, gpu)
    assert (result.blocks, result.occupancy, result.limited_by) == (blocks, occupancy, limited_by)


def test_sm90_cubins_count_the_reserved_shared_memory():
    assert H100.kernel_shared_bytes(3072) == 2048 and H100.kernel_shared_bytes(0) == 0
    assert A100.kernel_shared_bytes(2048) == 2048


def test_occupancy_rejects_impossible_launches():
    with pytest.raises(ValueError, match="threads_per_block"):
        theoretical_occupancy(2048, 32, 0)
    with pytest.raises(ValueError, match="registers_per_thread"):
        theoretical_occupancy(256, 300, 0)


def test_compile_environment_never_simulates():
    env = cuda_compile.compile_environment({"NUMBA_ENABLE_CUDASIM": "1", "NBCONV_CUDASIM_GPU_BLOCKS": "1"})
    assert env["NUMBA_ENABLE_CUDASIM"] == "0" and "NBCONV_CUDASIM_GPU_BLOCKS" not in env
    assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"  # the caller's own environment is untouched


def test_launch_sizes_follow_small_blocks_not_the_simulator_flag():
    """Block sizes chosen with backend.simulated() would be recorded at the simulator's size, so the resource
    report would give the wrong occupancy: launchers ask launch.small_blocks() instead."""
    import pathlib
    import nbconv.kernels.cuda as package
    offenders = [path.name for path in sorted(pathlib.Path(package.__file__).parent.glob("*.py"))
                 if "simulated()" in path.read_text()]
    assert offenders == [], f"use nbconv.kernels.cuda.launch.small_blocks() to size blocks in {offenders}"


def test_without_the_toolkit_it_says_why(capsys):
    """In a simulated process (as here) nothing compiles for GPUs: main reports why, with status 3."""
    assert cuda_compile.main(["--json"]) == 3
    result = json.loads(capsys.readouterr().out)
    assert result["available"] is False and "simulator" in result["reason"]
