"""nbconv against PyTorch (CPU) on this machine; writes benchmarks/RESULTS.md and benchmarks/speed.png.

Usage: python benchmarks/run.py [--mnist DIR] [--repeat N] [--skip-epoch] [--epoch-pairs N]
Needs PyTorch for the comparisons (pip install torch==2.13.0 here; never an nbconv dependency).
Suites: the layer set (forward, and forward+backward), LeNet-5 training step and inference, one full-MNIST
training epoch as a whole process, JIT compile time (cold and warm cache), peak memory.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numba

from nbconv import bench
from nbconv.host_memory import keep_freed_host_memory

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def machine():
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, numba {numba.__version__}"


def run(command, env=None):
    started = time.perf_counter()
    output = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=ROOT,
                            check=True).stdout
    return output, time.perf_counter() - started


def epoch_comparison(mnist, pairs):
    """Whole-process seconds of one training epoch, nbconv and PyTorch run alternately `pairs` times (this
    machine's speed drifts by 20-40% over minutes, which alternation spreads over both). Returns the medians
    and the median of the per-pair ratios."""
    results = []
    for _ in range(pairs):
        ours, seconds = run([sys.executable, "-m", "nbconv", "train", "lenet5", "--epochs", "1", "--device", "cpu",
                             "--data-dir", mnist, "--out", os.path.join(tempfile.mkdtemp(), "m.npz")])
        accuracy = float(ours.split("test accuracy ")[1].split("%")[0]) / 100
        theirs, _ = run([sys.executable, os.path.join(HERE, "torch_lenet5.py"), mnist, "1"])
        torch_seconds, torch_accuracy = (float(v) for v in theirs.split())
        results.append((seconds, accuracy, torch_seconds, torch_accuracy))
        print(f"epoch pair: nbconv {seconds:.2f} s, torch {torch_seconds:.2f} s", flush=True)
    median = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
    ours, theirs = [r[0] for r in results], [r[2] for r in results]
    return {"nbconv_s": median(ours), "nbconv_min_s": min(ours), "nbconv_max_s": max(ours),
            "nbconv_accuracy": results[0][1], "torch_s": median(theirs), "torch_min_s": min(theirs),
            "torch_max_s": max(theirs), "torch_accuracy": results[0][3],
            "speed_vs_torch": median([r[2] / r[0] for r in results]), "pairs": pairs,
            "ratios": [round(r[2] / r[0], 2) for r in results]}


def compile_times(mnist):
    """(seconds a cold `nbconv train` spends compiling, seconds to a warm process's first training step).

    The first is a short training run on an empty JIT cache minus the same run on the filled cache."""
    cache = tempfile.mkdtemp(prefix="nbconv-cache-")
    command = [sys.executable, "-m", "nbconv", "train", "lenet5", "--epochs", "1", "--limit", "640",
               "--data-dir", mnist, "--out", os.path.join(cache, "m.npz")]
    _, cold = run(command, {"NUMBA_CACHE_DIR": cache})
    _, warm = run(command, {"NUMBA_CACHE_DIR": cache})
    first_step, _ = run([sys.executable, os.path.join(HERE, "first_step.py")], {"NUMBA_CACHE_DIR": cache})
    return cold - warm, float(first_step)


def spread_text(result, prefix):
    """'median [min-max]' milliseconds of one engine's timing in a result dict (prefix '' or 'torch_')."""
    return (f"{result[prefix + 'median_ms' if not prefix else 'torch_ms']:.3f} "
            f"[{result[prefix + 'min_ms']:.3f}-{result[prefix + 'max_ms']:.3f}]")


def ratio_text(result):
    """'median [min-max]' of a result's speed ratio against PyTorch over the rounds."""
    return (f"{result['speed_vs_torch']:.2f}x [{result['speed_vs_torch_min']:.2f}-"
            f"{result['speed_vs_torch_max']:.2f}]")


def chart(rows, path):
    """A horizontal bar chart of speed relative to PyTorch (1.0 = parity)."""
    from PIL import Image, ImageDraw
    width, bar_area, row_h = 760, 420, 22
    image = Image.new("RGB", (width, 40 + row_h * len(rows) + 30), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 8), "nbconv speed relative to PyTorch CPU (higher is better; line = parity)", fill="black")
    top, left = 34, 300
    largest = max(max(ratio for _, ratio in rows), 1.0) * 1.1
    for k, (label, ratio) in enumerate(rows):
        y = top + k * row_h
        draw.text((10, y + 4), label, fill="black")
        length = bar_area * ratio / largest
        draw.rectangle((left, y + 3, left + length, y + row_h - 3), fill=(60, 120, 220) if ratio >= 1 else (220, 90, 60))
        draw.text((left + length + 5, y + 4), f"{ratio:.2f}x", fill="black")
    parity = left + bar_area / largest
    draw.line((parity, top - 2, parity, top + row_h * len(rows)), fill="black", width=1)
    image.save(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", default=os.path.join(ROOT, "..", "shared", "data", "mnist"))
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--skip-epoch", action="store_true")
    parser.add_argument("--epoch-pairs", type=int, default=5, help="alternating nbconv/PyTorch epoch runs")
    args = parser.parse_args()
    if bench.torch_module() is None:
        sys.exit("PyTorch is not importable; install it for the comparison (pip install torch==2.13.0)")
    keep_freed_host_memory()  # as `nbconv train` and `nbconv bench` do
    sgemm = bench.sgemm_rate()
    layers = []
    for shape in bench.LAYER_SET:
        forward = bench.conv_case(shape, "conv2d_forward", repeat=args.repeat, compare_torch=True)
        both = bench.conv_case(shape, "conv2d", repeat=args.repeat, compare_torch=True)
        layers.append((shape, forward, both))
        print(f"{shape.name}: forward {forward['gflops']:.1f} GFLOP/s ({forward['speed_vs_torch']:.2f}x torch), "
              f"fwd+bwd {both['gflops']:.1f} GFLOP/s ({both['speed_vs_torch']:.2f}x torch)", flush=True)
    networks = bench.lenet5_cases(repeat=max(args.repeat, 20), compare_torch=True)
    networks += bench.medium_cases(repeat=max(args.repeat, 20), compare_torch=True)
    epoch = None if args.skip_epoch else epoch_comparison(args.mnist, args.epoch_pairs)
    compiling, first_step = compile_times(args.mnist)
    memory = json.loads(run([sys.executable, os.path.join(HERE, "memory.py"), args.mnist, "2"])[0])

    lines = ["# Benchmark results", "",
             f"Machine: {machine()}. numpy sgemm (1024^3, float32, its default threads): **{sgemm:.0f} GFLOP/s**, "
             f"measured in the same run. nbconv uses {numba.get_num_threads()} threads; PyTorch "
             f"{bench.torch_module().__version__} the same number.", "",
             "Produced by `python benchmarks/run.py` (rerun it to refresh this file). Ratios are speed relative to "
             "PyTorch: above 1 means nbconv is faster.", "",
             "## Convolution layers (float32)", "",
             "Times are median [min-max] ms per call over all rounds; ratios the median [min-max] of the rounds' "
             "ratios.", "",
             "| layer | shape | forward GFLOP/s | % of sgemm | forward vs torch | fwd+bwd nbconv ms | fwd+bwd PyTorch ms "
             "| fwd+bwd GFLOP/s | fwd+bwd vs torch |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for shape, forward, both in layers:
        lines.append(f"| {shape.name} | {shape.describe()} | {forward['gflops']:.1f} | "
                     f"{100 * forward['gflops'] / sgemm:.0f}% | {ratio_text(forward)} | {spread_text(both, '')} | "
                     f"{spread_text(both, 'torch_')} | {both['gflops']:.1f} | {ratio_text(both)} |")
    lines += ["", "## LeNet-5 and a medium network", "",
              f"The medium network is `{bench.MEDIUM_SPEC}` (the lecture's pattern with n=2, m=2, k=1).", "",
              "| case | nbconv | PyTorch | nbconv ms | PyTorch ms | ratio |", "|---|---:|---:|---:|---:|---:|"]
    for result in networks:
        lines.append(f"| {result['case']} ({result['shape']}) | {result['images_per_s']:,.0f} img/s | "
                     f"{result['torch_images_per_s']:,.0f} img/s | {spread_text(result, '')} | "
                     f"{spread_text(result, 'torch_')} | {ratio_text(result)} |")
    if epoch:
        lines.append(f"| one full-MNIST epoch + test, whole process (`nbconv train lenet5 --epochs 1` vs "
                     f"`benchmarks/torch_lenet5.py`) | {epoch['nbconv_s']:.1f} s ({100 * epoch['nbconv_accuracy']:.2f}%) | "
                     f"{epoch['torch_s']:.1f} s ({100 * epoch['torch_accuracy']:.2f}%) | "
                     f"{1e3 * epoch['nbconv_s']:.0f} [{1e3 * epoch['nbconv_min_s']:.0f}-{1e3 * epoch['nbconv_max_s']:.0f}] | "
                     f"{1e3 * epoch['torch_s']:.0f} [{1e3 * epoch['torch_min_s']:.0f}-{1e3 * epoch['torch_max_s']:.0f}] | "
                     f"{epoch['speed_vs_torch']:.2f}x [{min(epoch['ratios']):.2f}-{max(epoch['ratios']):.2f}] |")
        lines += ["", f"The epoch row: medians of {epoch['pairs']} alternating runs of each; the ratio is the median "
                      f"of the per-pair ratios ({', '.join(f'{r:.2f}' for r in epoch['ratios'])})."]
    lines += ["", "## Compile time and memory", "",
              f"- A first `nbconv train lenet5` on an empty JIT cache spends **{compiling:.1f} s** compiling (a short "
              f"run, `--epochs 1 --limit 640`, on an empty cache minus the same run on the filled cache); a second "
              f"process reaches its first training step **{first_step:.1f} s** after it starts "
              f"(`benchmarks/first_step.py`).",
              f"- LeNet-5 training on full MNIST: peak RSS **{memory['peak_mb']:.0f} MB**; RSS after each epoch "
              f"{memory['rss_mb_after_epoch']} MB (`benchmarks/memory.py`).", "",
              "![speed relative to PyTorch](speed.png)", ""]
    rows = [(f"{shape.name} fwd+bwd", both["speed_vs_torch"]) for shape, _, both in layers]
    rows += [(result["case"], result["speed_vs_torch"]) for result in networks]
    if epoch:
        rows.append(("lenet5 epoch (process)", epoch["speed_vs_torch"]))
    chart(rows, os.path.join(HERE, "speed.png"))
    write_generated(os.path.join(HERE, "RESULTS.md"), "\n".join(lines[2:]))
    print("\n".join(lines))


START, END = "<!-- benchmarks/run.py: start -->", "<!-- benchmarks/run.py: end -->"


def write_generated(path, text):
    """Replace the generated block of RESULTS.md (keeping hand-recorded runs around it), atomically."""
    existing = open(path).read() if os.path.exists(path) else "# Benchmark results\n\n" + START + END + "\n"
    if START not in existing:
        existing += "\n" + START + END + "\n"
    head, rest = existing.split(START, 1)
    tail = rest.split(END, 1)[1] if END in rest else ""
    with open(path + ".new", "w") as out:
        out.write(head + START + "\n" + text + "\n" + END + tail)
    os.replace(path + ".new", path)


if __name__ == "__main__":
    main()
