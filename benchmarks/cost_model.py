"""The data-parallel cost model of docs/distributed.md: per training step on K nodes, ring-allreduce time
against compute time, for nbconv's models and for larger reference models.

    python benchmarks/cost_model.py [--bandwidth-gbit 25] [--latency-us 30] [--node-speedup 16]
                                    [--global-batch 1024] [--efficiency 0.8]

Ring allreduce of B bytes (float32 gradients) on K nodes: 2 (K - 1) steps, each sending B / K bytes and
paying one latency:  t_reduce = 2 (K - 1) / K * B / bandwidth + 2 (K - 1) * latency.
Compute: t_image, one core's training time per image, measured by benchmarks/distributed.py (1 process x
1 thread) on this machine; a node is assumed to run node_speedup times faster than one core. A node with b
images of the global batch computes for b * t_image / node_speedup. Blocking efficiency is
compute / (compute + reduce); with reductions overlapping backward (about two thirds of a step) at best
compute / (compute + max(0, reduce - 2/3 compute)).
"""
import argparse

# name: (weights, one core's training time per image in ms), measured for lenet5 and resnet20 as the CPU time
# per step of one single-threaded process (benchmarks/distributed.py, batch 64: 9.2 and 448 ms), which the
# shared machine's load inflates far less than wall-clock time
MODELS = {
    "lenet5": (61_706, 9.2 / 64),
    "resnet20": (269_034, 448 / 64),
}
# reference models nbconv does not time: per-image time scaled from resnet20's by arithmetic per image
# (ResNet-20 on 32x32: 41 MFLOP forward; ResNet-50 on 224x224: 4.1 GFLOP; VGG-16 on 224x224: 15.5 GFLOP)
REFERENCE = {
    "resnet50": (25_557_032, 448 / 64 * 4100 / 41),
    "vgg16": (138_357_544, 448 / 64 * 15500 / 41),
}
NODES = (8, 16, 32, 64, 128, 256)


def reduce_seconds(weights, nodes, bandwidth_gbit, latency_us, bytes_per_weight=4):
    size = weights * bytes_per_weight
    return 2 * (nodes - 1) / nodes * size / (bandwidth_gbit * 1e9 / 8) + 2 * (nodes - 1) * latency_us * 1e-6


def table(bandwidth_gbit, latency_us, node_speedup, global_batch, efficiency):
    rows = [f"| model | MB reduced/step | K | allreduce ms | compute ms/node (batch {global_batch}) | "
            f"efficiency blocking / overlapped | images per node for {efficiency:.0%} (blocking) | "
            "global batch then |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, (weights, image_ms) in {**MODELS, **REFERENCE}.items():
        for nodes in NODES:
            reduce = reduce_seconds(weights, nodes, bandwidth_gbit, latency_us)
            compute = global_batch / nodes * image_ms / 1e3 / node_speedup
            overlapped = compute / (compute + max(0.0, reduce - compute * 2 / 3))
            # compute / (compute + reduce) >= e  <=>  compute >= e / (1 - e) * reduce
            per_node = efficiency / (1 - efficiency) * reduce * node_speedup / (image_ms / 1e3)
            rows.append(f"| {name} | {weights * 4 / 1e6:.2f} | {nodes} | {1e3 * reduce:.2f} | {1e3 * compute:.2f} | "
                        f"{compute / (compute + reduce):.0%} / {overlapped:.0%} | {per_node:,.0f} | "
                        f"{per_node * nodes:,.0f} |")
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bandwidth-gbit", type=float, default=25.0)
    parser.add_argument("--latency-us", type=float, default=30.0)
    parser.add_argument("--node-speedup", type=float, default=16.0)
    parser.add_argument("--global-batch", type=int, default=1024)
    parser.add_argument("--efficiency", type=float, default=0.8)
    args = parser.parse_args()
    print(table(args.bandwidth_gbit, args.latency_us, args.node_speedup, args.global_batch, args.efficiency))


if __name__ == "__main__":
    main()
