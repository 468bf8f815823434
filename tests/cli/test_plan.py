"""`nbconv plan` through CliRunner: each convolution's passes, with the plan's algorithm and buffers."""
import json

from click.testing import CliRunner

from nbconv import models
from nbconv.model_plans import layer_plans
from nbconv_cli.main import app


def test_plan_lists_each_layer_and_pass_with_the_plans_algorithm():
    result = CliRunner().invoke(app, ["plan", "lenet5", "--input", "1x28x28", "--batch", "8", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    rows = [(row["layer"], row["pass"], row["algorithm"]) for row in report["plans"]]
    expected = [(entry.path, entry.plan.pass_, entry.plan.algorithm)
                for entry in layer_plans(models.build("lenet5", input_shape=(1, 28, 28)), (1, 28, 28), 8)]
    assert rows == expected
    assert rows[:2] == [("conv1", "forward", "flat"), ("conv1", "backward_weight", "flat")]  # no input gradient
    assert all(row["buffer_bytes"] > 0 and row["ms"] > 0 and not row["measured"] for row in report["plans"])
    assert report["plans"][0]["buffers"]["padded"][0] >= 1


def test_plan_measures_and_prints_a_table():
    result = CliRunner().invoke(app, ["plan", "conv8k3p1,relu,conv4k3s2", "--input", "3x9x9", "--batch", "2",
                                      "--measure", "--repeat", "1"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "measured" in lines[0] and lines[1].split()[:4] == ["layer", "spec", "pass", "algorithm"]
    assert [line.split()[0] for line in lines[2:-1]] == ["conv1", "conv1", "conv2", "conv2", "conv2"]
    assert "gemm" in lines[-2] and lines[-1].startswith("total")


def test_plan_reports_bad_models_and_inputs():
    runner = CliRunner()
    bad_model = runner.invoke(app, ["plan", "conv8k3,nonsense", "--input", "1x9x9"])
    assert bad_model.exit_code == 2 and "nonsense" in bad_model.output
    bad_input = runner.invoke(app, ["plan", "lenet5", "--input", "28by28"])
    assert bad_input.exit_code == 2 and "CxHxW" in bad_input.output
    no_conv = runner.invoke(app, ["plan", "fc10", "--input", "4"])
    assert no_conv.exit_code == 1 and "no convolutions" in no_conv.output
