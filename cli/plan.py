"""`nbconv plan`: the CPU convolution algorithm, buffers and time of each layer and pass of a model."""
import json

import click

from nbconv import bench, models
from nbconv.model_plans import layer_plans

from .common import configure_cpu, threads_option
from .summary import parse_shape

EXAMPLES = """
\b
  nbconv plan resnet20 --input 3x32x32 --batch 128
  nbconv plan lenet5 --input 1x28x28 --measure
  nbconv plan "conv64k3p1,relu,conv64k3p1" --input 64x56x56 --batch 8 --json
"""
PASS_NAMES = {"forward": "forward", "backward_input": "input grad", "backward_weight": "weight grad"}


def _flops(entry):
    """Multiply-adds x 2 of one pass (the same for all three): N*D*OH*OW*(C/groups)*KH*KW*2."""
    N, D, OH, OW = entry.plan.convolution.output_shape
    _, Cg, KH, KW = entry.plan.convolution.weight_shape
    return 2.0 * N * D * OH * OW * Cg * KH * KW


@click.command("plan", epilog=EXAMPLES)
@click.argument("model")
@click.option("--input", "input_text", required=True, help="Input shape of one sample, CxHxW (or CxW).")
@click.option("--batch", type=click.IntRange(1, 4096), default=64, show_default=True, help="Images per batch.")
@click.option("--classes", type=click.IntRange(1), default=None, help="Outputs of a named architecture.")
@click.option("--measure", is_flag=True, help="Time each pass on random data (--repeat runs, median) instead of "
                                              "estimating it at this machine's sgemm rate.")
@click.option("--repeat", type=click.IntRange(1), default=3, show_default=True, help="Timed runs per pass.")
@threads_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def plan_command(model, input_text, batch, classes, measure, repeat, threads, as_json):
    """Print, for each convolution of MODEL and each pass a training step runs (forward, weight gradient,
    input gradient), the CPU algorithm nbconv picks, the scratch buffers it uses and its time (estimated
    from the work at this machine's sgemm rate, or measured with --measure). Passes that read the model's
    input need no input gradient and are left out, as training leaves them out.

    MODEL is an architecture name, lenet5/lenet1, or a spec string (see `nbconv summary`)."""
    configure_cpu(threads)
    shape = parse_shape(input_text)
    try:
        net = models.build(model, input_shape=shape, num_classes=classes)
        entries = layer_plans(net, shape, batch)
    except (ValueError, TypeError) as error:
        raise click.BadParameter(str(error), param_hint="MODEL") from None
    if not entries:
        raise click.ClickException(f"{model} has no convolutions to plan")
    rate = None if measure else bench.sgemm_rate()
    rows = []
    for entry in entries:
        flops = _flops(entry)
        if measure:
            seconds = bench.time_plan(entry.plan, repeat, entry.plan.buffers[0].dtype if entry.plan.buffers
                                      else net.parameters()[0].value.dtype)[0]
        else:
            seconds = flops / (rate * 1e9)
        rows.append({"layer": entry.path, "spec": entry.layer.spec(), "pass": entry.plan.pass_,
                     "algorithm": entry.plan.algorithm, "buffer_bytes": entry.plan.nbytes,
                     "buffers": {buffer.name: list(buffer.shape) for buffer in entry.plan.buffers},
                     "gflop": flops / 1e9, "ms": 1e3 * seconds, "measured": measure})
    if as_json:
        click.echo(json.dumps({"model": model, "input": list(shape), "batch": batch,
                               "sgemm_gflops": rate, "plans": rows}, indent=1))
        return
    how = "measured" if measure else f"estimated at {rate:.0f} GFLOP/s (sgemm)"
    click.echo(f"{model}, input {'x'.join(map(str, shape))}, batch {batch}; times {how}")
    click.echo(f"{'layer':<24} {'spec':<18} {'pass':<12} {'algorithm':<13} {'buffers':>10} {'GFLOP':>8} "
               f"{'ms':>9}  buffer shapes")
    for row in rows:
        shapes = ", ".join(f"{name} {'x'.join(map(str, dims))}" for name, dims in row["buffers"].items())
        click.echo(f"{row['layer']:<24} {row['spec'][:18]:<18} {PASS_NAMES[row['pass']]:<12} {row['algorithm']:<13} "
                   f"{row['buffer_bytes'] / 2**20:6.1f} MiB {row['gflop']:8.3f} {row['ms']:9.2f}  {shapes}")
    total = sum(row["ms"] for row in rows)
    peak = max(row["buffer_bytes"] for row in rows)
    click.echo(f"total {total:.1f} ms a step ({how}); the largest plan borrows {peak / 2**20:.1f} MiB of scratch")
