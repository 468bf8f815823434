"""The two processes of a cold `nbconv train` as one timeline, from benchmarks/jit_profile.py's
JIT_PROFILE_TIMELINE file: each top-level compile (which process, wall seconds from the main process's start,
CPU seconds, the function), merged in time order, then each process's span and the first step.

    NUMBA_CACHE_DIR=$(mktemp -d) JIT_PROFILE_HELPER=/tmp/h.txt JIT_PROFILE_TIMELINE=/tmp/t.jsonl \\
        python benchmarks/jit_profile.py train resnet20 --dataset synthetic:3x32x32:10:64:64 --epochs 1 \\
        --batch-size 64 --out /tmp/r20.npz
    python benchmarks/jit_timeline.py /tmp/t.jsonl [--min-cpu 0.1]
"""
import argparse
import json


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("timeline")
    parser.add_argument("--min-cpu", type=float, default=0.1, help="leave out compiles under this many CPU s")
    args = parser.parse_args()
    with open(args.timeline) as lines:
        rows = [json.loads(line) for line in lines if line.strip()]
    processes = {row["process"]: row for row in rows if row["name"] == "(process)"}
    origin = processes["main"]["start"] if "main" in processes else min(row["start"] for row in rows)
    compiles = sorted((row for row in rows if row["name"] != "(process)"), key=lambda row: row["start"])
    totals = {}
    print(f"{'process':8s} {'start':>7s} {'end':>7s} {'cpu s':>6s}  function")
    for row in compiles:
        totals[row["process"]] = totals.get(row["process"], 0.0) + row["cpu_s"]
        if row["cpu_s"] >= args.min_cpu:
            print(f"{row['process']:8s} {row['start'] - origin:7.2f} {row['end'] - origin:7.2f} {row['cpu_s']:6.2f}  "
                  f"{row['name'].replace('nbconv.kernels.cpu.', '')}")
    for role, row in sorted(processes.items()):
        extra = {key: row[key] for key in ("first_step_s", "first_step_cpu_s", "helper_wait_s", "helper_done_at_s",
                                           "main_took") if key in row}
        print(f"{role}: {row['start'] - origin:.2f}-{row['end'] - origin:.2f} s, compiles {totals.get(role, 0):.2f} "
              f"CPU s (top level, inclusive) {json.dumps(extra)}")


if __name__ == "__main__":
    main()
