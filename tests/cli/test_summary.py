"""`nbconv summary`: one row per layer with output shape, parameters and multiply-adds; totals; clean errors."""
import re

from click.testing import CliRunner

from nbconv import models, summary
from nbconv_cli.main import app


def test_rows_count_every_parameter_and_the_convolutions_work():
    model = models.build("conv8k3p1,relu,maxpool2,res[conv8k3p1nobias,bn|conv8k1],cat[conv2k1|conv3k3p1],gap,fc5",
                         input_shape=(3, 10, 10))
    found = summary.rows(model, (3, 10, 10))
    by_name = {row.name: row for row in found}
    assert by_name["conv1"].output_shape == (8, 10, 10) and by_name["conv1"].parameters == 8 * 27 + 8
    assert by_name["conv1"].multiply_adds == 8 * 10 * 10 * 27
    assert by_name["res1.conv1"].multiply_adds == 8 * 5 * 5 * 72
    assert by_name["res1"].kind == "+ (residual sum)" and by_name["cat1"].output_shape == (5, 5, 5)
    assert by_name["cat1.branch2.conv1"].multiply_adds == 3 * 5 * 5 * 72
    assert by_name["fc1"].multiply_adds == 25
    parameters, buffers, work = summary.totals(model, found)
    assert parameters == sum(row.parameters for row in found) == sum(p.value.size for p in model.parameters())
    assert buffers == 8 + 8 + 1 and work == sum(row.multiply_adds for row in found)


def test_summary_command_prints_layers_and_totals():
    result = CliRunner().invoke(app, ["summary", "resnet20", "--input", "3x32x32", "--classes", "100"])
    assert result.exit_code == 0, result.output
    assert re.search(r"layer3\.0\.downsample\.0\s+conv64k1s2nobias\s+64x8x8\s+2,048\s+131,072", result.output)
    assert re.search(r"^fc\s+fc100\s+100\s+6,500\s+6,400$", result.output, re.M)
    assert "total: 278,324 trainable parameters" in result.output


def test_summary_command_errors_are_one_line():
    runner = CliRunner()
    for arguments, message in ((["summary", "resnet20", "--input", "3xbig"], "expected CxHxW"),
                               (["summary", "resnet20", "--input", "3x0x4"], "positive sizes"),
                               (["summary", "vgg11", "--input", "3x16x16"], "vgg11 does not admit input of shape"),
                               (["summary", "conv4k3g0", "--input", "3x8x8"], "group count must be >= 1")):
        result = runner.invoke(app, arguments)
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
