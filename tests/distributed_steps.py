"""Run by tests/test_distributed.py, alone or under mpiexec: one epoch of training on an IDX set, recording
the loss of every step; rank 0 writes {"size", "losses", "weights_agree", "root_shards", "fc_weight_sum"} as
JSON (root_shards: how many images of a full batch rank 0 takes after each step).

python tests/distributed_steps.py DATA_DIR OUT.json [--model SPEC] [--batch-size N] [--limit N] [--single]
[--no-overlap] [--shared auto|0|1] [--bucket-bytes N] [--balance-every N --slow-rank R]
"""
import argparse
import json
import time

import numba
import numpy as np

from nbconv import data, distributed, models
from nbconv.train import TrainConfig, make_optimizer, train_epoch

parser = argparse.ArgumentParser()
parser.add_argument("data_dir")
parser.add_argument("out")
parser.add_argument("--model", default="conv6k5,relu,maxpool2,conv8k3,relu,maxpool2,flatten,fc32,relu,fc10")
parser.add_argument("--batch-size", type=int, default=30)
parser.add_argument("--limit", type=int, default=1502)
parser.add_argument("--lr", type=float, default=None)
parser.add_argument("--float64", action="store_true")
parser.add_argument("--single", action="store_true", help="the single-process world, no MPI at all")
parser.add_argument("--no-overlap", action="store_true")
parser.add_argument("--shared", choices=["auto", "0", "1"], default="auto",
                    help="sum gradients in shared memory (1), through Allreduce (0), or as the world decides")
parser.add_argument("--bucket-bytes", type=int, default=distributed.BUCKET_BYTES)
parser.add_argument("--balance-every", type=int, default=0, help="share batches by speed, updated this often")
parser.add_argument("--slow-rank", type=int, default=None, help="this rank sleeps 20 ms a step (balancing tests)")
args = parser.parse_args()

numba.set_num_threads(1)
world = distributed.SINGLE if args.single else distributed.MPIWorld(overlap=not args.no_overlap,
                                                                   bucket_bytes=args.bucket_bytes,
                                                                   balance=args.balance_every > 0,
                                                                   balance_every=max(args.balance_every, 1),
                                                                   shared=None if args.shared == "auto" else
                                                                   args.shared == "1")
splits = data.load("mnist", args.data_dir, echo=lambda *a, **k: None)
images, labels = splits.train_images[:args.limit], splits.train_labels[:args.limit]
config = TrainConfig(model=args.model, epochs=1, batch_size=args.batch_size, augment=0, seed=0, lr=args.lr)
model = models.build(args.model, input_shape=(1, 28, 28), seed=0, dtype=np.float64 if args.float64 else np.float32)
optimizer = make_optimizer(config, model.parameters())
losses, shards = [], []


def on_step(step, loss):
    losses.append(loss)
    shards.append(len(world.shard(np.arange(args.batch_size))))
    if world.rank == args.slow_rank:
        time.sleep(0.02)


train_epoch(model, optimizer, images, labels, config, 0, progress=None, world=world, on_step=on_step)
agree = True
for parameter in model.parameters():
    mine = np.ascontiguousarray(parameter.value)
    root = mine.copy()
    if world.distributed:
        world.comm.Bcast(root, root=0)
        agree = agree and bool(world.sum(int(not np.array_equal(mine, root))) == 0)
if world.is_root:
    with open(args.out, "w") as handle:
        json.dump({"size": world.size, "shared": world.distributed and world._shared_reducer is not None, "losses": losses, "weights_agree": agree, "root_shards": shards,
                   "fc_weight_sum": float(np.sum(model.parameters()[-2].value, dtype=np.float64))}, handle)
