"""`nbconv bench` through CliRunner on tiny shapes (speed is measured, never asserted)."""
import json

import pytest
from click.testing import CliRunner

from nbconv import bench
from nbconv_cli.main import app

TINY = "n=2,c=3,h=9,w=9,d=4,k=3,p=1"


def test_bench_reports_median_spread_gflops_and_sgemm_share():
    result = CliRunner().invoke(app, ["bench", "conv2d", "relu", "--shape", TINY, "--repeat", "2", "--json",
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["sgemm_gflops"] > 0
    conv, relu = report["results"]
    assert conv["case"] == "shape1" and conv["shape"] == "2x3x9x9 -> 4, 3x3, s1 p1 g1"
    for key in ("median_ms", "min_ms", "max_ms", "gflops", "percent_of_sgemm"):
        assert conv[key] > 0
    assert conv["min_ms"] <= conv["median_ms"] <= conv["max_ms"]
    assert relu["kernel"] == "relu"


def test_bench_text_output_and_flop_count():
    result = CliRunner().invoke(app, ["bench", "conv2d_forward", "--shape", TINY, "--repeat", "1"])
    assert result.exit_code == 0 and "GFLOP/s" in result.output and "sgemm" in result.output
    assert bench.parse_shape(TINY).forward_flops() == 2 * 2 * 4 * 9 * 9 * 3 * 9


def test_bench_rejects_a_bad_shape():
    result = CliRunner().invoke(app, ["bench", "--shape", "n=2,c=3"])
    assert result.exit_code == 2 and "missing h, w, d, k" in result.output
    result = CliRunner().invoke(app, ["bench", "--shape", "n=1,c=2,h=5,w=5,d=2,k=3,k=5"])
    assert result.exit_code == 2 and "k is given twice" in result.output


def test_lenet5_preset_runs():
    results = bench.lenet5_cases(repeat=1)
    assert [r["case"] for r in results] == ["lenet5-train-step", "lenet5-inference"]
    assert all(r["images_per_s"] > 0 for r in results)


def test_medium_preset_runs_from_the_cli():
    result = CliRunner().invoke(app, ["bench", "--preset", "medium", "--repeat", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert '"medium-train-step"' in result.output and '"medium-inference"' in result.output


def test_torch_twins_have_the_same_parameter_shapes():
    torch = pytest.importorskip("torch")
    from nbconv import models
    for spec, builder in (("lenet5", bench.torch_lenet5), (bench.MEDIUM_SPEC, bench.torch_medium)):
        ours = [p.shape for p in models.build(spec).parameters()]
        theirs = [tuple(p.shape) for p in builder(torch).parameters()]
        assert ours == theirs, spec


def test_compare_torch_adds_ratio_when_torch_is_installed():
    pytest.importorskip("torch")
    result = bench.conv_case(bench.parse_shape(TINY), "conv2d", repeat=1, compare_torch=True)
    assert result["speed_vs_torch"] > 0 and result["torch_ms"] > 0


def test_batch_norm_case_times_forward_and_backward(monkeypatch):
    result = bench.batch_norm_case((2, 3, 5, 4), repeat=1, compare_torch=False)
    assert result["case"] == "bn-2x3x5x4" and result["kernel"] == "batch_norm"
    assert 0 < result["min_ms"] <= result["median_ms"] <= result["max_ms"]
    monkeypatch.setattr(bench, "BATCH_NORM_SET", ((2, 3, 4, 4),))
    output = CliRunner().invoke(app, ["bench", "--preset", "batchnorm", "--repeat", "1", "--json", "--device", "cpu"])
    assert output.exit_code == 0, output.output
    assert [r["case"] for r in json.loads(output.output)["results"]] == ["bn-2x3x4x4"]


def test_algorithm_all_times_every_applicable_algorithm_side_by_side():
    from nbconv.kernels.cpu.conv.plan import applicable, plan
    result = CliRunner().invoke(app, ["bench", "conv2d", "--shape", TINY, "--repeat", "1", "--device", "cpu",
                                      "--algorithm", "all", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["results"]
    for pass_ in ("forward", "backward_input", "backward_weight"):
        chosen = plan(pass_, (2, 3, 9, 9), (4, 3, 3, 3), 1, 1, 1, 1)
        timed = [row["algorithm"] for row in rows if row["pass"] == pass_]
        assert timed == applicable(pass_, chosen.convolution)
        assert [row["algorithm"] for row in rows if row["pass"] == pass_ and row["chosen"]] == [chosen.algorithm]
    assert all(row["median_ms"] > 0 and row["buffer_bytes"] >= 0 for row in rows)


def test_algorithm_names_are_checked_and_marked_in_text():
    runner = CliRunner()
    result = runner.invoke(app, ["bench", "conv2d_forward", "--shape", "n=2,c=3,h=9,w=9,d=4,k=3,s=2,p=1",
                                 "--repeat", "1", "--device", "cpu", "--algorithm", "gemm,direct,shift"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2 and " direct" in lines[0] and "*gemm" in lines[1]  # in the plan's order; no shift (stride 2)
    bad = runner.invoke(app, ["bench", "--shape", TINY, "--device", "cpu", "--algorithm", "fft"])
    assert bad.exit_code == 2 and "unknown algorithm fft" in bad.output
    preset = runner.invoke(app, ["bench", "--preset", "lenet5", "--device", "cpu", "--algorithm", "all"])
    assert preset.exit_code == 2 and "--algorithm times convolutions" in preset.output


def test_compare_rounds_reports_both_engines_min_median_max_and_the_ratio_range(monkeypatch):
    # a fake clock: ours takes 1 s a call in every round, theirs 2, 3, 4, 5, 6 s in its five rounds
    now = {"t": 0.0}
    theirs_round = {"k": 0}
    monkeypatch.setattr(bench.time, "perf_counter", lambda: now["t"])
    monkeypatch.setattr(bench.time, "sleep", lambda seconds: None)

    def ours():
        now["t"] += 1.0

    def theirs():
        now["t"] += 2.0 + theirs_round["k"] // 4  # 4 calls a round: 2 warm-up + 2 timed
        theirs_round["k"] += 1

    (median, low, high), compared = bench.compare_rounds(ours, theirs, repeat=2, rounds=5)
    assert (median, low, high) == (1.0, 1.0, 1.0)
    assert (compared.median, compared.low, compared.high) == (4.0, 2.0, 6.0)
    assert (compared.ratio, compared.ratio_low, compared.ratio_high) == (4.0, 2.0, 6.0)
    assert compared[0] == compared.median and compared[1] == compared.ratio  # the old (median, ratio) reading
    fields = bench.comparison_fields(compared)
    assert fields["torch_min_ms"] == 2000.0 and fields["speed_vs_torch_max"] == 6.0


def test_compare_torch_prints_ranges_for_both_engines():
    pytest.importorskip("torch")
    output = CliRunner().invoke(app, ["bench", "conv2d", "--shape", TINY, "--repeat", "1", "--compare", "torch",
                                      "--device", "cpu"])
    assert output.exit_code == 0, output.output
    line = [text for text in output.output.splitlines() if text.startswith("shape1")][0]
    assert line.count("[") == 3 and "x torch [" in line
