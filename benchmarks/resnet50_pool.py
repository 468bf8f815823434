"""ResNet-50's max pooling (3x3 windows, stride 2, padding 1, 64 channels of 112x112 an image) for inference:
nbconv's 3x3 values-only kernel (pool.max_pool2d_forward_3x3), the window-by-window kernel it replaced
(pool.max_pool2d_forward_windows, no positions) and a one-node onnxruntime MaxPool graph, in alternating
rounds. Set NUMBA_NUM_THREADS (and --threads for onnxruntime) per process; --clock thread with one thread.
"""
import argparse
import os
import tempfile
import time

import numpy as np

from nbconv.kernels.cpu import pool


def onnxruntime_max_pool(shape, threads):
    """A function of one array running a one-node MaxPool graph (3x3, stride 2, padding 1) in onnxruntime."""
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    out_shape = list(shape[:2]) + [(shape[2] - 1) // 2 + 1, (shape[3] - 1) // 2 + 1]
    graph = helper.make_graph([node], "max_pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "max_pool.onnx")
        onnx.save(model, path)
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": x})[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=("thread", "wall"), default="thread")
    args = parser.parse_args()
    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    rng = np.random.default_rng(0)
    for batch in (int(b) for b in args.batches.split(",")):
        x = rng.standard_normal((batch, 64, 112, 112)).astype(np.float32)
        out = np.empty((batch, 64, 56, 56), np.float32)
        none = np.empty((0, 0, 0, 0), np.int64)
        engines = {
            "values": lambda: pool.max_pool2d_forward_3x3(x, out),
            "windows": lambda: pool.max_pool2d_forward_windows(x, out, none, 3, 3, 2, 2, 1, 1),
            "onnxruntime": (lambda run: lambda: run(x))(onnxruntime_max_pool(x.shape, args.threads)),
        }
        for run in engines.values():
            run()
        times = {name: [] for name in engines}
        for _ in range(args.rounds):
            for name, run in engines.items():
                start = clock()
                for _ in range(args.repeat):
                    run()
                times[name].append((clock() - start) / args.repeat * 1e3)
        print(f"batch {batch}, load {os.getloadavg()[0]:.2f}:")
        for name, values in times.items():
            print(f"  {name:12s} ms min {min(values):.3f} median {np.median(values):.3f} max {max(values):.3f}")
        ratios = np.array(times["windows"]) / np.array(times["values"])
        print(f"  windows / values by round: min {ratios.min():.2f} median {np.median(ratios):.2f} max {ratios.max():.2f}")
        ratios = np.array(times["onnxruntime"]) / np.array(times["values"])
        print(f"  onnxruntime / values by round: min {ratios.min():.2f} median {np.median(ratios):.2f} "
              f"max {ratios.max():.2f}")


if __name__ == "__main__":
    main()
