"""Time the CUDA convolution kernels' candidate tile shapes on a GPU, each in its own process.

    python benchmarks/gpu_tiles.py [--out DIR]

For each candidate (tall tile for passes with >= 48 result rows / narrow tile for fewer), a child process
with NBCONV_CUDA_TILES set times conv2d's three passes on the layers of the layer set that use them (as
benchmarks/gpu.py's per-pass table), so that the default in nbconv/kernels/cuda/conv.py is a measured
choice. Prints a markdown table; with --out, also writes tiles.json there.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# (tall, narrow) as ty,tx,tm,tn,bk: threads ty x tx, results tm x tn a thread, steps of bk
CANDIDATES = (
    ("16,16,4,4,8", "8,32,2,4,8"),     # 64x64 and 16x128 tiles (the default)
    ("16,16,4,4,16", "8,32,2,4,16"),   # the same, twice the reduction a step
    ("16,16,4,8,8", "4,64,4,4,8"),     # 64x128; 16x256
    ("16,16,8,8,8", "16,16,1,4,8"),    # 128x128; 16x64
)
LAYERS = ("lenet5-conv2", "alexnet-conv1", "vgg-3x3", "resnet-3x3", "pointwise-1x1")


def measure_here():
    sys.path.insert(0, HERE)
    import gpu
    from nbconv import bench
    bench.LAYER_SET = tuple(shape for shape in bench.LAYER_SET if shape.name in LAYERS)
    print(json.dumps(gpu.pass_rows()))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", metavar="DIR")
    parser.add_argument("--best", metavar="FILE", help="write the fastest candidate (least total time over the "
                        "layers and passes) there, as NBCONV_CUDA_TILES reads it")
    parser.add_argument("--measure-here", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.measure_here:
        measure_here()
        return 0
    results = []
    for tall, narrow in CANDIDATES:
        env = dict(os.environ, NBCONV_CUDA_TILES=f"{tall}/{narrow}", NUMBA_ENABLE_CUDASIM="0")
        completed = subprocess.run([sys.executable, os.path.abspath(__file__), "--measure-here"], cwd=ROOT, env=env,
                                   capture_output=True, text=True, timeout=300)
        if completed.returncode != 0:
            results.append({"tall": tall, "narrow": narrow, "error": completed.stderr[-1500:]})
            print(f"{tall}/{narrow}: failed\n{completed.stderr[-1500:]}", flush=True)
            continue
        rows = json.loads(completed.stdout.strip().splitlines()[-1])
        results.append({"tall": tall, "narrow": narrow, "rows": rows})
        print(f"{tall}/{narrow}: done", flush=True)
    lines = ["| tiles (tall / narrow: ty,tx,tm,tn,bk) | layer | forward ms | input gradient ms | weight gradient ms |",
             "|---|---|---:|---:|---:|"]
    for result in results:
        for row in result.get("rows", []):
            lines.append(f"| {result['tall']} / {result['narrow']} | {row['layer']} | {row['forward_ms']:.3f} | "
                         f"{row['input_ms']:.3f} | {row['weight_ms']:.3f} |")
    print("\n".join(lines))
    measured = [result for result in results if result.get("rows")]
    if measured:
        fastest = min(measured, key=lambda result: sum(row[name + "_ms"] for row in result["rows"]
                                                        for name in ("forward", "input", "weight")))
        print(f"fastest: {fastest['tall']}/{fastest['narrow']}")
        if options.best:
            with open(options.best, "w") as out:
                out.write(f"{fastest['tall']}/{fastest['narrow']}")
    if options.out:
        with open(os.path.join(options.out, "tiles.json"), "w") as out:
            json.dump(results, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
