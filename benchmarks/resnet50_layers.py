"""ResNet-50's convolution layers one by one, nbconv's inference path against onnxruntime, ranked by the total
milliseconds nbconv loses on each (a layer's time difference x how often the network runs it).

    python benchmarks/resnet50_layers.py [--batch 1] [--rounds 5] [--repeat 3] [--clock thread|wall] [--strided]
                                         [--winograd] [--without-windows] [--without-winograd4]

nbconv: the layer as nn.infer runs it (plan.prepared_plan's algorithm, weight-only work kept, batch norm as a
scale and shift and the ReLU in its epilogue). onnxruntime: a one-node Conv + Relu graph (it fuses the two, as
it fuses a batch norm into the weights). Both with Numba's thread count; alternating rounds, median of
`repeat` calls a round. With one thread the default clock is the thread's CPU time (onnxruntime runs a
one-thread session on the calling thread), which a loaded machine bends less than wall time. `--strided`:
only the layers of kernel over 1 and stride 2 (the 7x7 stem, the three 3x3 stride-2 layers);
`--without-windows`: also the layer with `plan.PREPARED_PACKED_WINDOWS` off (im2col + BLAS, 'gemm', where the
plan gives 'packed_windows'), in the same rounds. `--winograd`: only the 3x3 stride-1 layers; `--without-winograd4`:
also the layer with `plan.PREPARED_WINOGRAD4` off (F(2x2) where the plan gives F(4x4)), in the same rounds.
"""
import argparse
import statistics
import time

import numba
import numpy as np

import nbconv.functional as F
from nbconv.kernels.cpu.conv import plan as planning
from nbconv.kernels.cpu.conv.plan import prepared_plan

# (C, D, kernel, stride, input size, count in the network)
LAYERS = [
    (3, 64, 7, 2, 224, 1),
    (64, 64, 1, 1, 56, 1), (256, 64, 1, 1, 56, 2), (64, 64, 3, 1, 56, 3), (64, 256, 1, 1, 56, 4),
    (256, 128, 1, 1, 56, 1), (128, 128, 3, 2, 56, 1), (256, 512, 1, 2, 56, 1), (128, 512, 1, 1, 28, 4),
    (512, 128, 1, 1, 28, 3), (128, 128, 3, 1, 28, 3),
    (512, 256, 1, 1, 28, 1), (256, 256, 3, 2, 28, 1), (512, 1024, 1, 2, 28, 1), (256, 1024, 1, 1, 14, 6),
    (1024, 256, 1, 1, 14, 5), (256, 256, 3, 1, 14, 5),
    (1024, 512, 1, 1, 14, 1), (512, 512, 3, 2, 14, 1), (1024, 2048, 1, 2, 14, 1), (512, 2048, 1, 1, 7, 3),
    (2048, 512, 1, 1, 7, 2), (512, 512, 3, 1, 7, 2),
]


def ort_session(weight, stride, padding, threads):
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], strides=[stride, stride], pads=[padding] * 4),
         helper.make_node("Relu", ["y"], ["z"])], "layer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(np.zeros(weight.shape[0], np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--clock", choices=("thread", "wall"), default=None)
    parser.add_argument("--strided", action="store_true", help="only the strided layers with kernels over 1x1")
    parser.add_argument("--winograd", action="store_true", help="only the 3x3 stride-1 layers")
    parser.add_argument("--without-windows", action="store_true",
                        help="also time the layers packed_windows runs with it off (im2col + BLAS)")
    parser.add_argument("--without-winograd4", action="store_true",
                        help="also time the layers F(4x4) runs with it off (F(2x2))")
    arguments = parser.parse_args()
    threads = numba.get_num_threads()
    clock = time.thread_time if (arguments.clock or ("thread" if threads == 1 else "wall")) == "thread" \
        else time.perf_counter
    rng = np.random.default_rng(0)
    rows = []
    layers = [layer for layer in LAYERS if (not arguments.strided or (layer[2] > 1 and layer[3] > 1))
              and (not arguments.winograd or (layer[2] == 3 and layer[3] == 1))]
    # the settings a layer may be timed without: (option, setting in plan.py, the algorithm it gives)
    toggles = [(name, setting, algorithm) for name, setting, algorithm in
               (("without_windows", "PREPARED_PACKED_WINDOWS", "packed_windows"),
                ("without_winograd4", "PREPARED_WINOGRAD4", "winograd4")) if getattr(arguments, name)]
    for C, D, kernel, stride, size, count in layers:
        padding = kernel // 2
        x = rng.standard_normal((arguments.batch, C, size, size)).astype(np.float32)
        w = (rng.standard_normal((D, C, kernel, kernel)) / np.sqrt(C * kernel * kernel)).astype(np.float32)
        scale, shift = np.ones(D, np.float32), np.zeros(D, np.float32)
        prepared = {}
        session = ort_session(w, stride, padding, threads)
        def ours(without=None):
            for _, setting, _ in toggles:
                setattr(planning, setting, setting != without)
            return F._conv2d(x, w, None, (stride, stride), padding, (1, 1), 1, prepared=prepared,
                             epilogue=(scale, shift, None, "relu"))

        engines = {"nbconv": ours, "onnxruntime": lambda: session.run(None, {"x": x})[0]}
        chosen = prepared_plan(x.shape, w.shape, stride, stride, padding, padding).algorithm
        for _, setting, algorithm in toggles:
            if chosen == algorithm:
                engines[f"nbconv without {algorithm}"] = lambda setting=setting: ours(setting)
        for name in engines:
            np.testing.assert_allclose(engines[name](), engines["onnxruntime"](), rtol=1e-3, atol=1e-3)
        times = {name: [] for name in engines}
        for _ in range(arguments.rounds):
            for name, run in engines.items():
                samples = []
                for _ in range(arguments.repeat):
                    start = clock()
                    run()
                    samples.append(clock() - start)
                times[name].append(statistics.median(samples))
        ours()  # every setting back on
        ours, theirs = (1e3 * statistics.median(times[name]) for name in ("nbconv", "onnxruntime"))
        ratio = statistics.median([b / a for a, b in zip(times["nbconv"], times["onnxruntime"])])
        algorithm = prepared_plan(x.shape, w.shape, stride, stride, padding, padding, dtype=x.dtype).algorithm
        rows.append((count * (ours - theirs), f"{C} -> {D} {kernel}x{kernel} s{stride} on {size} (x{count})", algorithm,
                     ours, theirs, ratio, count))
        line = f"  {rows[-1][1]}: {algorithm} {ours:.2f} ms, onnxruntime {theirs:.2f} ms ({ratio:.2f}x)"
        for _, _, without in toggles:
            if f"nbconv without {without}" not in times:
                continue
            before = times[f"nbconv without {without}"]
            gain = statistics.median([b / a for a, b in zip(times["nbconv"], before)])
            against = statistics.median([b / a for a, b in zip(before, times["onnxruntime"])])
            gains = [b / a for a, b in zip(times["nbconv"], before)]
            line += (f"; without {without} {1e3 * statistics.median(before):.2f} ms ({against:.2f}x "
                     f"onnxruntime); {without} {gain:.2f}x [{min(gains):.2f}-{max(gains):.2f}]")
        print(line, flush=True)
    print(f"\nbatch {arguments.batch}, {threads} thread(s), clock {clock.__name__}, {arguments.rounds} alternating "
          f"rounds, median of {arguments.repeat} calls; ms a call, ranked by ms lost in the network")
    print("| layer (count) | nbconv algorithm | nbconv | onnxruntime | nbconv speed (ort / nbconv) | ms lost a forward |")
    print("|---|---|---:|---:|---:|---:|")
    for lost, label, algorithm, ours, theirs, ratio, count in sorted(rows, reverse=True):
        print(f"| {label} | {algorithm} | {ours:.2f} | {theirs:.2f} | {ratio:.2f}x | {lost:.1f} |")
    total_ours = sum(row[3] * row[6] for row in rows)
    total_theirs = sum(row[4] * row[6] for row in rows)
    print(f"| all {sum(row[6] for row in rows)} convolutions | | {total_ours:.1f} | {total_theirs:.1f} | "
          f"{total_theirs / total_ours:.2f}x | {total_ours - total_theirs:.1f} |")


if __name__ == "__main__":
    main()
