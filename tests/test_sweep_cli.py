"""``hbfp-dse sweep``, ``report`` and ``best`` end to end on tiny sweeps: in process through
typer's CliRunner, and as the installed ``hbfp-dse`` command for kill -9 and Ctrl-C."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from console import hbfp_dse
from typer.testing import CliRunner, Result

from hbfp_dse.cli import stored
from hbfp_dse.cli.app import app
from hbfp_dse.experiments import runner as runner_module
from hbfp_dse.experiments.estimate import estimate
from hbfp_dse.experiments.registration import plan_sweep
from hbfp_dse.experiments.store import RunRecord, Store, StoreError, SweepRecord
from hbfp_dse.experiments.store.liveness import WorkerIdentity
from hbfp_dse.experiments.sweepfile import Baseline, expand, parse_sweep

BASE = """base:
  model: mlp
  dataset: mnist-5k
  train_size: 256
  test_size: 128
  validation: 0.25
  epochs: {epochs}
  batch_size: 64
  device: cpu
"""

TINY = (
    "name: tiny\n"
    + BASE.format(epochs=2)
    + """baselines: [fp32, hbfp8]
grid:
  mantissa_bits: [4]
  block_size: [16, 64]
seeds: [0, 1]
"""
)

# One run of several epochs, each long enough (~1 s) to be caught in flight.
# Long enough (about 1.3 s an epoch) for a signal to find the run in flight.
LONG = """name: {name}
base:
  model: cnn
  train_size: 4096
  test_size: 128
  batch_size: 32
  epochs: 6
  device: cpu
baselines: [hbfp6]
"""

UNREACHABLE = "postgresql+psycopg://x:y@127.0.0.1:1/none"


@pytest.fixture(scope="module", autouse=True)
def _environment() -> Iterator[None]:
    """Eager quantizer (compiling takes longer than these runs), one torch thread (two
    threads on two busy cores are far slower than one), and no store from the environment."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HBFP_DSE_COMPILE", "0")
        patch.setenv("OMP_NUM_THREADS", "1")
        patch.delenv("HBFP_DSE_DB", raising=False)
        yield
    torch.set_num_threads(threads)


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def ok(*args: str | Path) -> Result:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result


def assert_user_error(result: Result, *fragments: str) -> None:
    """Exit code 2 and one ``error:`` message naming the problem, never a traceback."""
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: "), result.output
    assert sum(line.startswith("error") for line in result.output.splitlines()) == 1
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def stored_runs(db: Path, sweep: str | None = None) -> list[RunRecord]:
    store = Store(sqlite_url(db), create=False)
    try:
        return store.runs(sweep, with_epochs=True)
    finally:
        store.close()


def stored_sweep(db: Path, name: str) -> SweepRecord:
    store = Store(sqlite_url(db), create=False)
    try:
        return store.sweep(name)
    finally:
        store.close()


def checkpoints(db: Path) -> list[Path]:
    folder = db.with_suffix(".checkpoints")
    return sorted(folder.iterdir()) if folder.exists() else []


@dataclass
class Sweep:
    root: Path
    file: Path
    db: Path

    @property
    def url(self) -> str:
        return sqlite_url(self.db)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    """The tiny sweep, run once: 2 baselines + 2 grid points, 2 seeds, 2 epochs."""
    root = tmp_path_factory.mktemp("tiny")
    file = root / "tiny.yaml"
    file.write_text(TINY)
    sweep = Sweep(root, file, root / "results.db")
    result = ok("sweep", file, "--db", sweep.url)
    assert "sweep tiny: 8 runs, 0 already finished" in result.stderr
    assert "sweep tiny: done 8" in result.stdout
    return sweep


def report_json(sweep: Sweep) -> dict[str, Any]:
    return json.loads(ok("report", "--db", sweep.url, "--format", "json").stdout)


# The tiny sweep end to end --------------------------------------------------------------


def test_sweep_trains_every_run_once_and_records_it(tiny: Sweep) -> None:
    runs = stored_runs(tiny.db)
    planned = expand(parse_sweep(TINY))
    assert sorted(r.run_hash for r in runs) == sorted(p.run_hash for p in planned)
    for run in runs:
        assert (run.status, run.attempts, run.resumed_from_epoch, run.error) == (
            "done",
            1,
            None,
            None,
        )
        assert run.device == "cpu"
        assert [e.epoch for e in run.epochs] == [0, 1]
        assert run.final_acc == run.epochs[-1].test_acc
        assert run.best_acc == max(e.test_acc for e in run.epochs)
        assert run.started_at <= run.finished_at
    sweep = stored_sweep(tiny.db, runs[0].sweep)
    assert sweep.spec_yaml == TINY
    assert sweep.host
    assert sweep.torch_version == torch.__version__
    assert checkpoints(tiny.db) == []  # removed once their runs were done


def test_report_json_lists_every_run(tiny: Sweep) -> None:
    data = report_json(tiny)
    runs = data["runs"]
    assert len(runs) == 8
    stored = {r.id: r for r in stored_runs(tiny.db)}
    for run in runs:
        assert {"id", "sweep", "status", "seed", "accuracy", "density", "schedule"} <= set(run)
        assert (run["sweep"], run["status"]) == ("tiny", "done")
        assert run["seed"] in (0, 1)
        assert 0.0 <= run["accuracy"] <= 1.0
        assert run["accuracy"] == stored[run["id"]].final_acc  # a fraction, not percent
        assert run["density"] > 0
        [segment] = run["schedule"]  # one format per layer for both epochs
        assert segment["epochs"] == [0, 1]
        assert set(segment["formats"]) == {"layers.1", "layers.3", "layers.5"}
    by_label = {r["label"]: r for r in runs}
    assert by_label["fp32"]["density"] == 1.0
    assert set(by_label["hbfp8"]["schedule"][0]["formats"].values()) == {"hbfp8"}
    assert by_label["hbfp4"]["density"] > by_label["hbfp4_b16"]["density"] > 1.0
    # Configurations: the mean over seeds, and the Pareto front marked.
    configs = data["configurations"]
    assert len(configs) == 4
    for config in configs:
        accuracies = [stored[i].final_acc for i in config["runs"]]
        assert config["accuracy"] == pytest.approx(sum(accuracies) / 2)
        assert config["seeds"] == config["done"] == 2
    assert any(c["pareto"] for c in configs)
    densest = max(configs, key=lambda c: c["density"])
    assert densest["pareto"]


def test_report_csv(tiny: Sweep) -> None:
    out = ok("report", "--db", tiny.url, "--format", "csv", "--sweep", "tiny").stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 4
    assert {"label", "accuracy_pct", "density_vs_fp32", "status", "pareto"} <= set(rows[0])
    assert {row["label"] for row in rows} == {"fp32", "hbfp8", "hbfp4", "hbfp4_b16"}
    for row in rows:
        assert 0 <= float(row["accuracy_pct"]) <= 100
        assert row["status"] == "done"
    assert "*" in {row["pareto"] for row in rows}


def test_report_table_and_the_database_from_the_environment(
    tiny: Sweep, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HBFP_DSE_DB", tiny.url)
    out = ok("report").stdout
    assert "fp32" in out
    assert "hbfp8" in out
    assert "ppl" not in out  # perplexity is for language models


def test_a_language_models_report_gives_loss_and_perplexity(tmp_path: Path) -> None:
    file = tmp_path / "words.yaml"
    file.write_text(
        "name: words\nbase: {model: gpt, dataset: pydoc-topics, context_length: 16, "
        "train_size: 64, test_size: 32, epochs: 1, batch_size: 16, device: cpu}\n"
        "baselines: [fp32, hbfp4]\n"
    )
    url = sqlite_url(tmp_path / "words.db")
    ok("sweep", file, "--db", url)
    losses = {r.label: r.epochs[-1].test_loss for r in stored_runs(tmp_path / "words.db")}
    configs = {
        c["label"]: c
        for c in report_json(Sweep(tmp_path, file, tmp_path / "words.db"))["configurations"]
    }
    for label, loss in losses.items():
        assert configs[label]["test_loss"] == loss
        assert configs[label]["perplexity"] == pytest.approx(math.exp(loss), rel=1e-12)
    table = ok("report", "--db", url).stdout
    header = next(line for line in table.splitlines() if "acc %" in line)
    assert "loss" in header
    assert "ppl" in header
    fp32 = next(line for line in table.splitlines() if "│ fp32 " in line)
    assert f"{math.exp(losses['fp32']):.2f}" in fp32


def test_report_shows_where_every_run_trained(tiny: Sweep, tmp_path: Path) -> None:
    for run in report_json(tiny)["runs"]:
        [attempt] = run["attempts"]
        assert (attempt["attempt"], attempt["start_epoch"], attempt["device"]) == (1, 0, "cpu")
        assert attempt["worker"].startswith(f"{socket.gethostname()}:")
        assert attempt["cpu_threads"] == torch.get_num_threads()  # one worker, in this process
        assert (attempt["tf32"], attempt["deterministic"]) == (False, False)
        assert attempt["torch_version"] == torch.__version__
    table = ok("report", "--db", tiny.url).stdout
    assert f"torch {torch.__version__}, cpu, CPU threads {torch.get_num_threads()}," in table
    assert "TF32 off, deterministic off: 8 run(s)" in table
    # One run trained again elsewhere with other threads: the report says so.
    copy = tmp_path / "copy.db"
    with closing(sqlite3.connect(tiny.db)) as source, closing(sqlite3.connect(copy)) as target:
        source.backup(target)
        target.execute("UPDATE hbfp_attempts SET cpu_threads = cpu_threads + 1 WHERE run_id = 1")
        target.commit()
    result = ok("report", "--db", sqlite_url(copy))
    assert "8 run(s)" not in result.stdout
    assert ": 7 run(s)" in result.stdout
    assert ": 1 run(s)" in result.stdout
    assert "the runs trained in 2 environments" in result.stderr


@pytest.mark.parametrize("name", ["front.png", "front.html"])
def test_report_plot(tiny: Sweep, tmp_path: Path, name: str) -> None:
    plot = tmp_path / name
    result = ok("report", "--db", tiny.url, "--plot", plot)
    assert f"plot written to {plot}" in result.stderr.replace("\n", "")
    data = plot.read_bytes()
    assert len(data) > 1000
    if name.endswith(".png"):
        assert data.startswith(b"\x89PNG")
    else:
        assert b"<svg" in data  # the figure inline, its points hoverable
        assert b'<g id="point-0"' in data
        assert b"<td>hbfp4_b16</td>" in data  # the table of configurations


def test_a_plot_that_cannot_be_written_is_a_user_error(tiny: Sweep, tmp_path: Path) -> None:
    (tmp_path / "taken.png").mkdir()
    result = invoke("report", "--db", tiny.url, "--plot", tmp_path / "taken.png")
    assert_user_error(result, "taken.png: cannot be written: Is a directory")
    # (A read-only directory takes the same path; CI runs as root, who may write there.)
    assert_user_error(invoke("report", "--db", tiny.url, "--plot", tmp_path), "give a .png")


def test_report_gives_a_confidence_interval_over_seeds_and_the_drop_from_fp32(
    tiny: Sweep, tmp_path: Path
) -> None:
    configs = {c["label"]: c for c in report_json(tiny)["configurations"]}
    stored = {r.id: r.final_acc for r in stored_runs(tiny.db)}
    for config in configs.values():
        first, second = (stored[i] for i in config["runs"])
        std = abs(first - second) / math.sqrt(2)
        assert config["accuracy_std"] == pytest.approx(std)
        assert config["accuracy_ci95"] == pytest.approx(12.7062047 * std / math.sqrt(2))  # t(1)
        assert config["drop_vs_fp32"] == pytest.approx(
            configs["fp32"]["accuracy"] - config["accuracy"]
        )
    table = ok("report", "--db", tiny.url).stdout
    assert "± 95% CI" in table
    assert "drop vs FP32" in table
    fp32 = next(line for line in table.splitlines() if "│ fp32 " in line)
    assert "+0.00" in fp32
    # One seed: no interval, and best says it decides on one.
    one = tmp_path / "one.yaml"
    one.write_text(TINY.replace("name: tiny", "name: one").replace("seeds: [0, 1]", "seeds: [0]"))
    url = sqlite_url(tmp_path / "one.db")
    ok("sweep", one, "--db", url)
    assert "—" in ok("report", "--db", url).stdout
    result = ok("best", "--db", url, "--target-acc", "0.05")
    assert "has one seed: its accuracy has no confidence interval" in result.stderr


def test_best_warns_when_the_winners_interval_reaches_below_the_target(tiny: Sweep) -> None:
    densest = max(report_json(tiny)["configurations"], key=lambda c: c["density"])
    assert densest["selected_on"] == "validation"
    assert densest["validation_ci95"] > 0  # its two seeds differ (the runs are deterministic)
    target = densest["validation_accuracy"] - densest["validation_ci95"] / 2  # inside it
    result = ok("best", "--db", tiny.url, "--target-acc", f"{target:.6f}", "--format", "json")
    assert json.loads(result.stdout)["label"] == densest["label"]
    assert f"the 95% confidence interval of {densest['label']!r}'s validation" in result.stderr
    assert "reaches below the target" in result.stderr


def test_best_json(tiny: Sweep) -> None:
    configs = report_json(tiny)["configurations"]
    best = json.loads(
        ok("best", "--db", tiny.url, "--target-acc", "0.1", "--format", "json").stdout
    )
    assert {"accuracy", "density", "schedule", "runs"} <= set(best)
    reaching = [c for c in configs if c["accuracy"] >= 0.1]
    expected = max(reaching, key=lambda c: (c["density"], c["accuracy"]))
    assert (best["label"], best["density"]) == (expected["label"], expected["density"])
    assert best["accuracy"] == pytest.approx(expected["accuracy"])
    assert sorted(best["runs"]) == sorted(expected["runs"])
    assert len(best["runs"]) == 2  # both seeds
    assert best["schedule"] == expected["schedule"]
    assert best["target"] == 0.1


def test_best_yaml_is_a_baseline_for_a_sweep_file(tiny: Sweep) -> None:
    best = json.loads(
        ok("best", "--db", tiny.url, "--target-acc", "0.1", "--format", "json").stdout
    )
    out = ok("best", "--db", tiny.url, "--target-acc", "0.1", "--format", "yaml").stdout
    entries = yaml.safe_load(out)
    assert isinstance(entries, list)
    [entry] = entries
    baseline = Baseline.model_validate(entry)
    assert baseline.label == best["label"]
    # Pasted into a sweep file, it trains the same schedule.
    text = "name: again\n" + BASE.format(epochs=2) + yaml.safe_dump({"baselines": entries})
    [planned] = expand(parse_sweep(text))
    assert planned.config.schedule.model_dump(mode="json") == best["config"]["schedule"]
    assert planned.run_hash in {r.run_hash for r in stored_runs(tiny.db) if r.id in best["runs"]}


def test_best_table(tiny: Sweep) -> None:
    best = json.loads(
        ok("best", "--db", tiny.url, "--target-acc", "0.1", "--format", "json").stdout
    )
    out = ok("best", "--db", tiny.url, "--target-acc", "0.1").stdout
    assert best["label"] in out
    assert "layers.1" in out


def test_a_target_in_percent_equals_the_fraction(tiny: Sweep) -> None:
    def best(target: str) -> dict[str, Any]:
        args = ("best", "--db", tiny.url, "--target-acc", target, "--format", "json")
        return json.loads(ok(*args).stdout)

    assert best("10") == best("0.1") == best("10%")
    result = invoke("best", "--db", tiny.url, "--target-acc", "1.5")
    assert_user_error(result, "--target-acc 1.5 is ambiguous")


def test_an_unreachable_target_names_the_closest(tiny: Sweep) -> None:
    configs = report_json(tiny)["configurations"]
    closest = max(configs, key=lambda c: (c["validation_accuracy"], c["density"]))
    result = invoke("best", "--db", tiny.url, "--target-acc", "100", "--format", "json")
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert "no configuration reaches 100.00%" in result.stderr
    accuracy = f"{100 * closest['validation_accuracy']:.2f}% validation accuracy"
    assert f"the closest is {closest['label']!r} (tiny) at {accuracy}" in " ".join(
        result.stderr.split()
    )


def test_rerunning_the_sweep_trains_nothing(tiny: Sweep, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []

    def no_training(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        raise AssertionError("a finished run was trained again")

    before = {r.id: (r.status, r.attempts, r.finished_at) for r in stored_runs(tiny.db)}
    monkeypatch.setattr(runner_module, "train", no_training)
    result = ok("sweep", tiny.file, "--db", tiny.url)
    assert "8 runs, 8 already finished" in result.stderr
    assert "sweep tiny: done 8" in result.stdout
    assert calls == []
    assert {r.id: (r.status, r.attempts, r.finished_at) for r in stored_runs(tiny.db)} == before


def test_an_edited_file_counts_its_own_runs_and_names_the_ones_it_dropped(
    tiny: Sweep, tmp_path: Path
) -> None:
    db = tmp_path / "results.db"
    with closing(sqlite3.connect(tiny.db)) as source, closing(sqlite3.connect(db)) as copy:
        source.backup(copy)  # the write-ahead log too
    edited = tmp_path / "tiny.yaml"
    edited.write_text(TINY.replace("baselines: [fp32, hbfp8]", "baselines: [fp32]"))
    result = ok("sweep", edited, "--db", sqlite_url(db))
    assert "sweep tiny: 6 runs, 6 already finished" in result.stderr
    assert "also holds 1 configuration(s) this file no longer has, kept and reported: hbfp8" in (
        " ".join(result.stderr.split())
    )


# Other sweeps ---------------------------------------------------------------------------


def test_dry_run_lists_the_runs_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    file = tmp_path / "tiny.yaml"
    file.write_text(TINY)
    out = ok("sweep", file, "--dry-run").stdout
    for planned in expand(parse_sweep(TINY)):
        assert planned.run_hash[:8] in out
    assert "18.95x" in out  # hbfp4: the modelled density
    assert "8 runs, 16 epochs; no stored run to estimate the time from" in out
    ok("sweep", file, "--dry-run", "--db", sqlite_url(tmp_path / "other.db"))
    assert list(tmp_path.iterdir()) == [file]


def test_dry_run_estimates_the_time_from_stored_epochs(tiny: Sweep) -> None:
    seconds = sum(e.seconds for run in stored_runs(tiny.db) for e in run.epochs)
    out = ok("sweep", tiny.file, "--dry-run", "--db", tiny.url).stdout
    minutes, rest = divmod(round(seconds), 60)
    assert f"8 runs, 16 epochs; about {minutes} min {rest:02d} s on one worker" in out
    # Another seed of the same runs: the mean epoch time of their kind, times their epochs.
    other = parse_sweep(TINY.replace("seeds: [0, 1]", "seeds: [7]"))
    planned = plan_sweep(other, 100)
    found = estimate(planned, stored_runs(tiny.db))
    assert (found.runs, found.epochs, found.estimated_runs) == (4, 8, 4)
    emulated = [e.seconds for r in stored_runs(tiny.db) if r.label != "fp32" for e in r.epochs]
    fp32 = [e.seconds for r in stored_runs(tiny.db) if r.label == "fp32" for e in r.epochs]
    expected = 2 * (sum(fp32) / len(fp32)) + 3 * 2 * (sum(emulated) / len(emulated))
    assert found.seconds == pytest.approx(expected)


def test_two_local_workers_complete_every_run_once(tmp_path: Path) -> None:
    file = tmp_path / "pair.yaml"
    file.write_text("name: pair\n" + BASE.format(epochs=1) + "baselines: [fp32, hbfp8]\n"
                    "seeds: [0, 1]\n")  # fmt: skip
    db = tmp_path / "results.db"
    result = ok("sweep", file, "--db", sqlite_url(db), "--workers", "2")
    assert "sweep pair: done 4" in result.stdout
    runs = stored_runs(db)
    assert len(runs) == 4
    for run in runs:
        assert (run.status, run.attempts, [e.epoch for e in run.epochs]) == ("done", 1, [0])
        assert WorkerIdentity.parse(run.worker).pid != os.getpid()  # trained in a worker process
    assert checkpoints(db) == []


def test_a_failed_run_is_recorded_and_the_sweep_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "fails.yaml"
    file.write_text("name: fails\n" + BASE.format(epochs=1) + "baselines: [fp32, hbfp8, bf16]\n")
    db = tmp_path / "results.db"
    real_train = runner_module.train
    trained: list[str] = []

    def flaky_train(config: Any, **kwargs: Any) -> Any:
        trained.append(config.schedule.format)
        if config.schedule.format == "hbfp8":
            raise RuntimeError("boom: the accelerator caught fire")
        return real_train(config, **kwargs)

    monkeypatch.setattr(runner_module, "train", flaky_train)
    result = invoke("sweep", file, "--db", sqlite_url(db))
    assert result.exit_code == 1, result.output  # the sweep went on, then says it failed
    assert "done 2, failed 1" in result.stdout
    assert "1 run(s) failed" in result.output
    assert trained == ["fp32", "hbfp8", "bf16"]
    runs = {r.label: r for r in stored_runs(db)}
    assert runs["hbfp8"].status == "failed"
    assert "RuntimeError: boom: the accelerator caught fire" in runs["hbfp8"].error
    assert runs["hbfp8"].final_acc is None
    assert (runs["fp32"].status, runs["bf16"].status) == ("done", "done")
    result = invoke("report", "--db", sqlite_url(db), "--format", "json")  # the error: a traceback
    assert result.exit_code == 0, result.output
    failed = next(r for r in json.loads(result.stdout)["runs"] if r["label"] == "hbfp8")
    assert failed["status"] == "failed"
    assert "boom" in failed["error"]

    # A failed run stays failed on a plain rerun...
    assert invoke("sweep", file, "--db", sqlite_url(db)).exit_code == 1
    assert trained == ["fp32", "hbfp8", "bf16"]
    assert {r.label: r.status for r in stored_runs(db)}["hbfp8"] == "failed"
    # ... and --retry-failed runs it again.
    monkeypatch.setattr(runner_module, "train", real_train)
    result = ok("sweep", file, "--db", sqlite_url(db), "--retry-failed")
    assert "sweep fails: done 3" in result.stdout
    retried = {r.label: r for r in stored_runs(db)}["hbfp8"]
    assert (retried.status, retried.attempts, retried.error) == ("done", 2, None)
    assert retried.final_acc is not None
    assert {r.label: r.attempts for r in stored_runs(db)} == {"fp32": 1, "hbfp8": 2, "bf16": 1}


# Bad input: exit 2, one message, nothing written -----------------------------------------

BAD_FILES = {
    "unknown key": (TINY + "grdi: {}\n", ["tiny.yaml", "grdi: unknown key"]),
    "nested unknown key": (
        TINY.replace("block_size:", "blok_size:"),
        ["tiny.yaml", "grid.blok_size: unknown key"],
    ),
    "out of range": (
        TINY.replace("mantissa_bits: [4]", "mantissa_bits: [4, 40]"),
        ["tiny.yaml", "grid.mantissa_bits", "mantissa width 40 is outside 2..16"],
    ),
    "bad epochs": (TINY.replace("epochs: 2", "epochs: -1"), ["tiny.yaml", "base.epochs"]),
    "unknown format": (
        TINY.replace("[fp32, hbfp8]", "[fp32, hfbp8]"),
        ["tiny.yaml", "baselines.1", "unknown format 'hfbp8'"],
    ),
    "yaml syntax": (TINY.replace("seeds: [0, 1]", "seeds: [0, 1"), ["tiny.yaml:", "YAML syntax"]),
    "boost too long": (
        TINY.replace("block_size: [16, 64]", "boost_last_epochs: [3]"),
        ["tiny.yaml", "grid.boost_last_epochs: 3 is more than the 2 epochs"],
    ),
}


@pytest.mark.parametrize(("text", "fragments"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_a_bad_sweep_file_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, fragments: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    file = tmp_path / "tiny.yaml"
    file.write_text(text)
    for args in ([], ["--db", sqlite_url(tmp_path / "results.db")], ["--dry-run"]):
        assert_user_error(invoke("sweep", file, *args), *fragments)
    assert list(tmp_path.iterdir()) == [file]


def test_a_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    file = tmp_path / "tiny.yaml"
    file.write_text(TINY.replace("[fp32, hbfp8]", "[fp32, hbfp8"))
    line = TINY.splitlines().index("baselines: [fp32, hbfp8]") + 1
    result = invoke("sweep", file)
    assert_user_error(result, "YAML syntax error")
    location = result.stderr.removeprefix("error: ").split(": ")[0]
    assert location.startswith(f"{file}:")
    assert int(location.split(":")[-2]) in (line, line + 1)


def test_a_missing_sweep_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert_user_error(invoke("sweep", tmp_path / "nope.yaml"), "nope.yaml: no such file")
    assert list(tmp_path.iterdir()) == []


def test_a_sweep_over_the_run_limit_is_refused_with_the_flag_to_raise_it(tmp_path: Path) -> None:
    file = tmp_path / "tiny.yaml"
    file.write_text(TINY)
    db = tmp_path / "r.db"
    result = invoke("sweep", file, "--db", sqlite_url(db), "--max-runs", "5")
    # Counted before expanding: (2 baselines + 2 grid points) x 2 seeds, equal ones included.
    assert_user_error(result, "expands to 8 runs, more than the limit of 5", "--max-runs 8")
    assert not db.exists()
    assert invoke("sweep", file, "--max-runs", "8", "--dry-run").exit_code == 0


def test_a_stale_after_shorter_than_three_heartbeats_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "tiny.yaml"
    file.write_text(TINY)
    db = tmp_path / "r.db"
    assert_user_error(
        invoke("sweep", file, "--db", sqlite_url(db), "--stale-after", "1"),
        "--stale-after 1: at least 60",
    )
    assert not db.exists()


def test_a_checkpoint_dir_that_cannot_be_written_stops_the_sweep_first(tmp_path: Path) -> None:
    file = tmp_path / "tiny.yaml"
    file.write_text(TINY)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    db = tmp_path / "r.db"
    result = invoke("sweep", file, "--db", sqlite_url(db), "--checkpoint-dir", blocker / "ckpt")
    assert_user_error(result, f"checkpoint directory {blocker / 'ckpt'}")
    assert not db.exists()


def test_an_unknown_model_writes_no_database(tmp_path: Path) -> None:
    file = tmp_path / "tiny.yaml"
    file.write_text(TINY.replace("model: mlp", "model: nosuch"))
    db = tmp_path / "r.db"
    assert_user_error(invoke("sweep", file, "--db", sqlite_url(db)), "nosuch")
    assert not db.exists()


def test_an_unknown_device(tmp_path: Path) -> None:
    file = tmp_path / "tiny.yaml"
    file.write_text(TINY)
    assert_user_error(invoke("sweep", file, "--device", "tpu", "--dry-run"), "--device tpu")
    assert list(tmp_path.iterdir()) == [file]


@pytest.mark.parametrize(
    ("gpus", "message"),
    [("0", "--gpus: these runs train on cpu, not on CUDA"), ("0,x", "--gpus '0,x': give")],
)
def test_gpus_for_cpu_runs_or_not_gpu_indices(tmp_path: Path, gpus: str, message: str) -> None:
    file = tmp_path / "tiny.yaml"
    file.write_text(TINY)
    db = tmp_path / "r.db"
    result = invoke("sweep", file, "--db", sqlite_url(db), "--gpus", gpus)
    assert_user_error(result, message)
    assert not db.exists()


@pytest.mark.parametrize(
    "command",
    [["sweep", "FILE"], ["report"], ["best", "--target-acc", "0.5"]],
    ids=["sweep", "report", "best"],
)
def test_an_unreachable_database(tmp_path: Path, command: list[str]) -> None:
    file = tmp_path / "tiny.yaml"
    file.write_text(TINY)
    args = [str(file) if a == "FILE" else a for a in command]
    result = invoke(*args, "--db", UNREACHABLE)
    assert_user_error(result, "cannot open database postgresql+psycopg://x:***@127.0.0.1:1/none")
    assert ":y@" not in result.output  # the password stays hidden
    assert list(tmp_path.iterdir()) == [file]


@pytest.mark.parametrize(
    "command",
    [["sweep", "FILE"], ["report"], ["best", "--target-acc", "0.5"]],
    ids=["sweep", "report", "best"],
)
def test_a_database_that_is_not_ours(tmp_path: Path, command: list[str]) -> None:
    file = tmp_path / "tiny.yaml"
    file.write_text(TINY)
    db = tmp_path / "theirs.db"
    with closing(sqlite3.connect(db)) as raw, raw:
        raw.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        raw.execute("INSERT INTO invoices (total) VALUES (12.5)")
    before = db.read_bytes()
    args = [str(file) if a == "FILE" else a for a in command]
    result = invoke(*args, "--db", sqlite_url(db))
    assert_user_error(result, str(db), "is not an hbfp-dse results database", "'invoices'")
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["theirs.db", "tiny.yaml"]


@pytest.mark.parametrize("command", [["report"], ["best", "--target-acc", "0.5"]])
def test_reading_a_missing_database_creates_nothing(tmp_path: Path, command: list[str]) -> None:
    db = tmp_path / "results.db"
    assert_user_error(invoke(*command, "--db", sqlite_url(db)), f"no results database at {db}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("target", "problem"),
    [("0", "must be above 0"), ("150", "is above 100%"), ("-5", "must be above 0"),
     ("100.5", "is above 100%"), ("3", "is ambiguous")],
)  # fmt: skip
def test_a_target_outside_0_100_is_refused(tiny: Sweep, target: str, problem: str) -> None:
    before = tiny.db.read_bytes()
    result = invoke("best", "--db", tiny.url, "--target-acc", target)
    assert_user_error(result, f"--target-acc {target} {problem}", "give a fraction")
    assert tiny.db.read_bytes() == before


def test_an_unknown_sweep_name_lists_the_known_ones(tiny: Sweep) -> None:
    result = invoke("report", "--db", tiny.url, "--sweep", "nosuch")
    assert_user_error(result, "no sweep named 'nosuch'", "tiny")


# A killed or interrupted `hbfp-dse sweep` process -----------------------------------------


def start_sweep(file: Path, db: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HBFP_DSE_COMPILE": "0", "OMP_NUM_THREADS": "1"}
    env.pop("HBFP_DSE_DB", None)
    with log.open("wb") as out:
        return subprocess.Popen(
            [hbfp_dse(), "sweep", str(file), "--db", sqlite_url(db)],
            cwd=file.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # A test run started in the background of a shell inherits SIGINT ignored, and
            # Python then never raises KeyboardInterrupt: these tests send it on purpose.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )


def epochs_recorded(db: Path) -> int:
    """Read without writing: a read-only connection to the live database."""
    if not db.exists():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as raw:
            return raw.execute("SELECT count(*) FROM hbfp_epochs").fetchone()[0]
    except sqlite3.OperationalError:  # the tables are not there yet
        return 0


def wait_for_an_epoch(process: subprocess.Popen[bytes], db: Path, log: Path) -> int:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"hbfp-dse sweep exited with {process.returncode}:\n{log.read_text()}")
        recorded = epochs_recorded(db)
        if recorded:
            return recorded
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"no epoch recorded within 240 s:\n{log.read_text()}")


def run_row(db: Path) -> dict[str, Any]:
    with closing(sqlite3.connect(db)) as raw:
        raw.row_factory = sqlite3.Row
        return dict(raw.execute("SELECT * FROM hbfp_runs").fetchone())


def assert_resumed_and_done(db: Path, recorded_before: int) -> RunRecord:
    [run] = stored_runs(db)
    assert (run.status, run.attempts, run.error) == ("done", 2, None)
    # Nothing but the epoch in flight was lost: training resumed after the recorded ones.
    assert run.resumed_from_epoch is not None
    assert run.resumed_from_epoch >= max(1, recorded_before)
    assert [e.epoch for e in run.epochs] == list(range(6))
    assert run.final_acc == run.epochs[-1].test_acc
    assert checkpoints(db) == []
    return run


@pytest.mark.slow
def test_a_killed_sweep_resumes_from_its_last_epoch(tmp_path: Path) -> None:
    file, db, log = tmp_path / "long.yaml", tmp_path / "results.db", tmp_path / "sweep.log"
    file.write_text(LONG.format(name="long"))
    process = start_sweep(file, db, log)
    try:
        wait_for_an_epoch(process, db, log)
    finally:
        process.kill()  # kill -9: no chance to mark anything
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    recorded = epochs_recorded(db)
    row = run_row(db)
    assert (row["status"], row["attempts"]) == ("running", 1)
    assert 1 <= recorded < 6, "the run was caught in flight"
    assert WorkerIdentity.parse(row["worker"]).pid == process.pid
    assert any(p.name.endswith(f"-{row['run_hash']}.pt") for p in checkpoints(db))

    result = ok("sweep", file, "--db", sqlite_url(db))
    assert "1 runs, 0 already finished" in result.stderr
    resumed = assert_resumed_and_done(db, recorded)

    # Resuming from the checkpoint trains exactly what an uninterrupted run trains.
    again = tmp_path / "again"
    again.mkdir()
    (again / "long.yaml").write_text(LONG.format(name="long"))
    ok("sweep", again / "long.yaml", "--db", sqlite_url(again / "results.db"))
    [uninterrupted] = stored_runs(again / "results.db")
    assert [e.test_acc for e in resumed.epochs] == [e.test_acc for e in uninterrupted.epochs]
    assert [e.train_loss for e in resumed.epochs] == [e.train_loss for e in uninterrupted.epochs]


@pytest.mark.slow
def test_ctrl_c_marks_the_run_interrupted_and_exits_130(tmp_path: Path) -> None:
    file, db, log = tmp_path / "long.yaml", tmp_path / "results.db", tmp_path / "sweep.log"
    file.write_text(LONG.format(name="interrupted"))
    process = start_sweep(file, db, log)
    try:
        wait_for_an_epoch(process, db, log)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log.read_text()
    assert process.returncode == 130, output
    assert "interrupted" in output
    assert "Traceback" not in output
    recorded = epochs_recorded(db)
    row = run_row(db)
    assert (row["status"], row["attempts"]) == ("interrupted", 1)
    assert 1 <= recorded < 6

    result = ok("sweep", file, "--db", sqlite_url(db))
    assert "sweep interrupted: done 1" in result.stdout
    assert_resumed_and_done(db, recorded)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine can train CUDA runs")
def test_a_sweep_for_cuda_on_a_machine_without_it_registers_and_says_where_to_train(
    tmp_path: Path,
) -> None:
    file = tmp_path / "gpu.yaml"
    file.write_text("name: gpu\n" + BASE.format(epochs=1).replace("device: cpu", "device: cuda")
                    + "baselines: [fp32]\n")  # fmt: skip
    db = tmp_path / "r.db"
    result = invoke("sweep", file, "--db", sqlite_url(db))
    assert_user_error(result, "its runs train on cuda, and CUDA is not available here")
    [run] = stored_runs(db)
    assert (run.status, run.attempts) == ("pending", 0)  # for a worker that has a GPU


def test_an_unreachable_store_is_not_read_as_holding_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What is stored decides how a sweep resumes (e.g. without a validation split), so an
    outage is an error, while a store not made yet holds nothing."""
    monkeypatch.setenv("HBFP_DSE_DB_RETRY_S", "0")
    with pytest.raises(StoreError, match="cannot open database"):
        stored.stored_runs(UNREACHABLE, "tiny")
    assert stored.stored_runs(sqlite_url(tmp_path / "none.db"), "tiny") == []
    assert not (tmp_path / "none.db").exists()
