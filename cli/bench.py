"""`nbconv bench`: time kernels, layer presets and LeNet-5 steps; optionally against PyTorch."""
import json

import click
import numpy as np

from nbconv import bench as cases

from .common import device_option, resolve_device, configure_cpu, threads_option

EXAMPLES = """
\b
  nbconv bench --preset layers --compare torch      the built-in layer set, forward+backward
  nbconv bench --preset lenet5 --compare torch      LeNet-5 training step and inference
  nbconv bench --preset medium --compare torch      a medium network (four 16-channel 3x3 convolutions)
  nbconv bench --preset batchnorm --compare torch   batch norm forward+backward (training) on ResNet shapes
  nbconv bench conv2d_forward --shape n=8,c=64,h=56,w=56,d=64,k=3,p=1
  nbconv bench relu max_pool2d linear --json
  nbconv bench conv2d --shape n=8,c=64,h=28,w=28,d=64,k=3,p=1 --algorithm all
                                                    every CPU algorithm that applies, per pass, side by side
"""


@click.command(epilog=EXAMPLES)
@click.argument("kernels", nargs=-1, type=click.Choice(cases.KERNELS))
@click.option("--preset", type=click.Choice(cases.PRESETS), default=None, help="A named set of cases.")
@click.option("--shape", "shapes", multiple=True, help="Convolution shape as n=,c=,h=,w=,d=,k=[,s=,p=,g=] "
                                                       "(repeatable; default: the layer set).")
@device_option
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True)
@click.option("--repeat", type=click.IntRange(1), default=10, show_default=True, help="Timed runs per case.")
@click.option("--compare", type=click.Choice(["torch"]), default=None, help="Also time PyTorch (CPU) when installed.")
@threads_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--algorithm", "algorithms", default=None, metavar="all|NAME[,NAME...]",
              help="Time these CPU convolution algorithms (all: every one that applies) for each pass of each "
                   "shape, the plan's choice marked with *.")
def bench(kernels, preset, shapes, device, dtype, repeat, compare, threads, as_json, algorithms):
    """Time KERNELS (default conv2d = forward + backward) after a warm-up: median [min-max], GFLOP/s and
    percent of this machine's sgemm rate measured in the same run. With --compare torch, nbconv and PyTorch
    run in alternating rounds; PyTorch's median [min-max] and the speed ratio (median [min-max] over the
    rounds) follow."""
    device = resolve_device(device)
    configure_cpu(threads)
    try:
        conv_shapes = [cases.parse_shape(text, f"shape{k + 1}") for k, text in enumerate(shapes)] or cases.LAYER_SET
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--shape")
    if algorithms is not None:
        return _bench_algorithms(kernels, preset, conv_shapes, device, np.dtype(dtype), repeat, algorithms, as_json)
    compare_torch = compare == "torch"
    if compare_torch and cases.torch_module() is None:
        click.echo("--compare torch: PyTorch is not importable here; showing nbconv alone", err=True)
    sgemm = cases.sgemm_rate()
    results = []
    if preset == "lenet5":
        results += cases.lenet5_cases(device, max(repeat, 10), compare_torch)
    elif preset == "medium":
        results += cases.medium_cases(device, max(repeat, 10), compare_torch)
    elif preset == "batchnorm":
        results += [cases.batch_norm_case(shape, device, np.dtype(dtype), repeat, compare_torch)
                    for shape in cases.BATCH_NORM_SET]
    else:
        chosen = kernels or ("conv2d",)
        for kernel in chosen:
            if kernel.startswith("conv2d"):
                for shape in conv_shapes:
                    results.append(cases.conv_case(shape, kernel, device, np.dtype(dtype), repeat, compare_torch))
            else:
                results.append(cases.simple_case(kernel, device, np.dtype(dtype), repeat))
    for result in results:
        if "gflops" in result:
            result["percent_of_sgemm"] = 100 * result["gflops"] / sgemm
    if as_json:
        click.echo(json.dumps({"sgemm_gflops": sgemm, "results": results}, indent=1))
        return
    click.echo(f"sgemm (numpy BLAS, 1024^3, float32): {sgemm:.0f} GFLOP/s")
    for r in results:
        line = f"{r['case']:<18} {r['kernel']:<16} {r['median_ms']:9.3f} ms [{r['min_ms']:.3f}-{r['max_ms']:.3f}]"
        if "gflops" in r:
            line += f" {r['gflops']:7.1f} GFLOP/s {r['percent_of_sgemm']:5.1f}% sgemm"
        if "images_per_s" in r:
            line += f" {r['images_per_s']:10,.0f} img/s"
        if "speed_vs_torch" in r:
            line += (f"   torch {r['torch_ms']:8.3f} ms [{r['torch_min_ms']:.3f}-{r['torch_max_ms']:.3f}] -> "
                     f"{r['speed_vs_torch']:.2f}x torch [{r['speed_vs_torch_min']:.2f}-{r['speed_vs_torch_max']:.2f}]")
        click.echo(line)


def _bench_algorithms(kernels, preset, conv_shapes, device, dtype, repeat, algorithms, as_json):
    """`--algorithm`: every chosen CPU convolution algorithm timed per pass and shape, side by side."""
    from nbconv.kernels.cpu.conv.plan import ALGORITHMS
    if device != "cpu":
        raise click.UsageError("--algorithm times the CPU convolution algorithms: use it with --device cpu")
    if preset is not None or any(not kernel.startswith("conv2d") for kernel in kernels):
        raise click.UsageError("--algorithm times convolutions: give conv2d, conv2d_forward or conv2d_backward "
                               "and --shape, not a preset or other kernels")
    if algorithms != "all":
        algorithms = [name.strip() for name in algorithms.split(",") if name.strip()]
        unknown = [name for name in algorithms if name not in ALGORITHMS]
        if unknown or not algorithms:
            raise click.BadParameter(f"unknown algorithm {', '.join(unknown) or repr('')}; choose all or from "
                                     f"{', '.join(ALGORITHMS)}", param_hint="--algorithm")
    results = []
    for kernel in kernels or ("conv2d",):
        for shape in conv_shapes:
            results += cases.algorithm_cases(shape, kernel, dtype, repeat, algorithms)
    if as_json:
        click.echo(json.dumps({"results": results}, indent=1))
        return
    if not results:
        click.echo("none of those algorithms applies to these shapes")
    for r in results:
        mark = "*" if r["chosen"] else " "
        click.echo(f"{r['case']:<18} {r['pass']:<16} {mark}{r['algorithm']:<13} {r['median_ms']:9.3f} ms "
                   f"[{r['min_ms']:.3f}-{r['max_ms']:.3f}] {r['gflops']:7.1f} GFLOP/s "
                   f"{r['buffer_bytes'] / 2**20:8.2f} MiB buffers")
