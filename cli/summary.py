"""`nbconv summary`: a model's layers, output shapes, parameter counts and multiply-adds."""
import click

from nbconv import models, summary

EXAMPLES = """
\b
  nbconv summary resnet18 --input 3x224x224
  nbconv summary resnet20 --input 3x32x32 --classes 100
  nbconv summary "res[conv16k3p1,bn,relu,conv16k3p1,bn],relu,gap,fc10" --input 16x32x32
"""


def parse_shape(text):
    try:
        shape = tuple(int(part) for part in str(text).lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected CxHxW (e.g. 3x224x224), got {text!r}", param_hint="--input") from None
    if not 1 <= len(shape) <= 3 or min(shape) < 1:
        raise click.BadParameter(f"expected 1 to 3 positive sizes such as 3x224x224, got {text!r}",
                                 param_hint="--input")
    return shape


@click.command(epilog=EXAMPLES)
@click.argument("model")
@click.option("--input", "input_text", default="1x28x28", show_default=True,
              help="Input shape of one sample, CxHxW (or CxW, or F).")
@click.option("--classes", type=click.IntRange(1), default=None,
              help="Outputs of a named architecture (default: its own, 1000 for ImageNet ones, 10 for CIFAR ones).")
def summary_command(model, input_text, classes):
    """Print MODEL's layers (name, type, output shape, parameters, multiply-adds) and the totals.

    MODEL is an architecture name (alexnet, vgg11, vgg16, vgg11_bn, vgg16_bn, googlenet, resnet18, resnet34,
    resnet50, resnet20, resnet56), lenet5/lenet1, or a spec string (see nbconv.models)."""
    shape = parse_shape(input_text)
    try:
        net = models.build(model, input_shape=shape, num_classes=classes)
    except (ValueError, TypeError) as error:
        raise click.BadParameter(str(error), param_hint="MODEL") from None
    for line in summary.format_table(net, shape):
        click.echo(line)


summary_command.name = "summary"
