"""``hbfp-dse bench``: one JSON object with both step times and their ratio (not a timed test)."""

from __future__ import annotations

import importlib
import json
import logging

import torch
from typer.testing import CliRunner

from hbfp_dse.cli.app import app

quantize_module = importlib.import_module("hbfp_dse.formats.quantizer")


def test_bench_json_on_a_small_model():
    args = ["bench", "--model", "cnn", "--number-format", "hbfp4_b64", "--batch-size", "8"]
    args += ["--steps", "1", "--warmup", "1", "--threads", "1", "--format", "json"]
    threads = torch.get_num_threads()
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == threads  # --threads holds for the command only
    [data] = json.loads(result.stdout)
    assert data["fp32_step_s"] > 0
    assert data["emulated_step_s"] > 0
    assert data["ratio"] == data["emulated_step_s"] / data["fp32_step_s"]
    assert data["channels_last"] is True  # the default: the faster memory format on CPU
    assert data["threads"] == 1
    assert (data["format"], data["blocking"], data["steps"]) == ("hbfp4", "reduction", 1)
    assert (data["forward_rounding"], data["backward_rounding"]) == ("nearest", "nearest")


def test_bench_rows_for_several_formats_and_roundings():
    args = ["bench", "--model", "cnn", "--batch-size", "8", "--steps", "1", "--warmup", "1"]
    args += ["--number-format", "hbfp4_b64", "--number-format", "mxfp4_e2m1"]
    args += ["--forward-rounding", "stochastic", "--backward-rounding", "stochastic"]
    result = CliRunner().invoke(app, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["format"], r["forward_rounding"], r["backward_rounding"]) for r in rows] == [
        ("hbfp4", "stochastic", "stochastic"),
        ("mxfp4_e2m1", "stochastic", "stochastic"),
    ]
    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0, table.output
    assert "mxfp4_e2m1" in table.stdout
    assert "stochastic" in table.stdout


def test_bench_rejects_a_bad_rounding():
    result = CliRunner().invoke(app, ["bench", "--backward-rounding", "up"])
    assert result.exit_code == 2
    assert "--backward-rounding must be one of nearest, stochastic" in result.stderr


def test_bench_rejects_a_bad_blocking():
    result = CliRunner().invoke(app, ["bench", "--blocking", "rows"])
    assert result.exit_code == 2
    assert "--blocking must be one of reduction, reference" in result.stderr


def test_the_cuda_home_notice_of_a_cpu_run_is_filtered():
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    log = logging.getLogger("torch.utils.cpp_extension")
    handler = Collect(logging.WARNING)
    log.addHandler(handler)
    try:
        quantize_module._silence_cuda_home_notice()
        quantize_module._silence_cuda_home_notice()  # installed once
        log.warning("No CUDA runtime is found, using CUDA_HOME='%s'", "/usr/local")
        log.warning("another warning")
    finally:
        log.removeHandler(handler)
    assert records == ["another warning"]
