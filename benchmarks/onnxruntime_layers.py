"""Where onnxruntime's time goes on the imported ResNet-50 (3x224x224), node by node, from its own profiler
(`SessionOptions.enable_profiling`), summed per kind of node like benchmarks/infer_calls.py's table.

    python benchmarks/onnxruntime_layers.py [--batch 1] [--runs 10]

onnxruntime fuses a convolution with its batch norm (folded into the weights), ReLU and residual sum
(FusedConv); each of its nodes is listed under its op type, kernel size, stride, input map and output
channels, with the median over the runs of its kernel time.
"""
import argparse
import collections
import json
import os
import statistics

import numba
import numpy as np
import onnxruntime

from resnet50_model import onnxruntime_session, resnet50_file


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--runs", type=int, default=10)
    arguments = parser.parse_args()
    rng = np.random.default_rng(0)
    threads = numba.get_num_threads()
    with resnet50_file(rng) as path:
        x = rng.standard_normal((arguments.batch, 3, 224, 224)).astype(np.float32)
        session = onnxruntime_session(path, threads, enable_profiling=True,
                                      profile_file_prefix=os.path.join(os.path.dirname(path), "profile"))
        input_name = session.get_inputs()[0].name
        for _ in range(3):  # warm-up runs, left out below
            session.run(None, {input_name: x})
        for _ in range(arguments.runs):
            session.run(None, {input_name: x})
        with open(session.end_profiling()) as file:
            events = json.load(file)
    runs = collections.defaultdict(list)  # node -> kernel milliseconds, one per run
    details = {}
    order = []
    whole = []
    for event in events:
        if event.get("cat") == "Session" and event["name"] == "model_run":
            whole.append(event["dur"] / 1e3)
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        node = event["name"][:-len("_kernel_time")]
        if node not in details:
            order.append(node)
            args = event.get("args", {})
            details[node] = (args.get("op_name", "?"), args.get("input_type_shape", []))
        runs[node].append(event["dur"] / 1e3)
    kinds = collections.defaultdict(float)
    counts = collections.Counter()
    for node in order:
        op, inputs = details[node]
        shapes = [list(shape.values())[0] for shape in inputs]
        label = op
        if op in ("Conv", "FusedConv") and len(shapes) >= 2:
            weight, image = shapes[1], shapes[0]
            label = f"{op} {weight[2]}x{weight[3]} -> {weight[0]} on {image[2]}x{image[3]}"
        median = statistics.median(runs[node][-arguments.runs:])
        kinds[label] += median
        counts[label] += 1
    print(f"onnxruntime {onnxruntime.__version__}, {threads} threads, batch {arguments.batch}, "
          f"{arguments.runs} runs, medians in ms")
    for label, total in sorted(kinds.items(), key=lambda item: -item[1]):
        print(f"{counts[label]:3d} x {label:50} {total:8.2f}")
    print(f"{'nodes':56} {sum(kinds.values()):8.2f}")
    print(f"{'whole run (model_run)':56} {statistics.median(whole[-arguments.runs:]):8.2f}")


if __name__ == "__main__":
    main()
