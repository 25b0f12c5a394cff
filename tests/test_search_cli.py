"""``hbfp-dse search`` end to end on a tiny real configuration: trials train and land in the
store, the study resumes, ``report`` and ``best`` see the searched schedules, and several
processes share one study on PostgreSQL."""

from __future__ import annotations

import errno
import json
import threading
import urllib.request
import uuid
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

import optuna
import optuna_dashboard
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from hbfp_dse.cli.app import app
from hbfp_dse.experiments import runner as runner_module
from hbfp_dse.experiments.store import Store

TINY = """
name: {name}
base: {{model: mlp, dataset: mnist-5k, epochs: 2, train_size: 192, test_size: 96,
        batch_size: 64}}
baselines: [hbfp8]
search:
  first: {{mantissa_bits: [6, 8]}}
  middle: {{mantissa_bits: [4, 8]}}
  last: {{mantissa_bits: [6, 8]}}
  boost_last_epochs: [0, 1]
  trials: 4
  seed: 0
"""


pytestmark = pytest.mark.usefixtures("eager_quantizer")


def _sweep_file(tmp_path: Path, name: str = "tiny") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(TINY.format(name=name))
    return path


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_search_trains_trials_into_the_store_and_resumes(tmp_path: Path) -> None:
    file, db = _sweep_file(tmp_path), f"sqlite:///{tmp_path / 'r.db'}"
    code, out = _invoke(
        "search", str(file), "--target-acc", "0.2", "--trials", "3", "--db", db, "--format", "json"
    )
    assert code == 0, out
    first = json.loads(out[out.index("{") :])
    assert first["trials"] == 3
    assert first["best"]["accuracy"] >= 0.2
    study = optuna.load_study(study_name="tiny@0.2", storage=db)
    # The anchors (hbfp8 and booster here; hbfp6 is not in the space) come first.
    assert [t.user_attrs.get("anchor") for t in study.trials[:2]] == ["hbfp8", "booster"]

    code, out = _invoke(
        "search", str(file), "--target-acc", "20", "--trials", "4", "--db", db, "--format", "json"
    )
    assert code == 0, out
    assert json.loads(out[out.index("{") :])["trials"] == 4  # resumed: one more trial

    runs = Store(db, create=False).runs("tiny")
    searched = [r for r in runs if r.kind == "search"]
    assert sorted(r.trial_number for r in searched) == [0, 1, 2, 3]
    assert all(r.status in ("done", "pruned") and r.search_target == 0.2 for r in searched)

    code, out = _invoke("report", "--db", db, "--format", "json", "--plot", str(tmp_path / "h.png"))
    assert code == 0, out
    report = json.loads(out[out.index("{") :])
    assert {r["kind"] for r in report["runs"]} == {"search"}
    assert (tmp_path / "h.png").stat().st_size > 0

    best_trial = max(
        (r for r in searched if r.status == "done" and r.final_acc >= 0.2),
        key=lambda r: r.density,
    )
    code, out = _invoke("best", "--db", db, "--target-acc", "0.2", "--format", "json")
    assert code == 0, out
    assert "has one seed" in out  # the warning, on stderr
    assert json.loads(out[out.index("{") :])["density"] == pytest.approx(best_trial.density)


def test_search_without_a_search_section_is_a_clear_error(tmp_path: Path) -> None:
    file = tmp_path / "plain.yaml"
    file.write_text("name: plain\nbaselines: [fp32]\n")
    db = tmp_path / "r.db"
    code, out = _invoke("search", str(file), "--target-acc", "0.9", "--db", f"sqlite:///{db}")
    assert code == 2
    assert "no 'search:' section" in out
    assert "Traceback" not in out
    assert not db.exists()


@pytest.mark.parametrize(
    ("line", "bad_line"),
    [
        ("  boost_last_epochs: [0, 1]\n", "  boost_last_epochs: [0, 3]\n"),
        ("  middle: {{mantissa_bits: [4, 8]}}\n", "  middle: {{groups: [nomatch*]}}\n"),
    ],
)
def test_a_bad_search_writes_nothing(tmp_path: Path, line: str, bad_line: str) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(TINY.replace(line, bad_line).format(name="bad"))
    db = tmp_path / "r.db"
    code, out = _invoke("search", str(file), "--target-acc", "0.5", "--db", f"sqlite:///{db}")
    assert code == 2
    assert "more than the 2 epochs" in out or "matches none of the middle layers" in out
    assert "Traceback" not in out
    assert not db.exists()


@pytest.mark.parametrize("target", ["0", "101", "-3"])
def test_search_rejects_targets_outside_the_range(tmp_path: Path, target: str) -> None:
    db = tmp_path / "r.db"
    code, out = _invoke(
        "search", str(_sweep_file(tmp_path)), "--target-acc", target, "--db", f"sqlite:///{db}"
    )
    assert code == 2
    assert f"--target-acc {target} " in out
    assert "give a fraction (0.91), a percentage (91)" in out
    assert not db.exists()


@pytest.mark.slow
def test_two_processes_share_one_study_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    url = pg_url
    name = f"pg-{uuid.uuid4().hex[:8]}"
    code, out = _invoke(
        "search",
        str(_sweep_file(tmp_path, name)),
        "--target-acc",
        "0.2",
        "--trials",
        "4",
        "--workers",
        "2",
        "--db",
        url,
        "--checkpoint-dir",
        str(tmp_path / "ck"),
    )
    assert code == 0, out
    study = optuna.load_study(study_name=f"{name}@0.2", storage=url)
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len([t for t in finished if t.state == optuna.trial.TrialState.COMPLETE]) >= 4
    runs = [r for r in Store(url, create=False).runs(name) if r.kind == "search"]
    numbers = [r.trial_number for r in runs]
    assert len(numbers) == len(set(numbers))  # each trial trained once
    assert all(r.status in ("done", "pruned") for r in runs)
    optuna.delete_study(study_name=f"{name}@0.2", storage=url)


def test_a_fault_of_the_machine_leaves_trials_unanswered_and_the_resumed_search_runs_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file, db = _sweep_file(tmp_path, "faulty"), f"sqlite:///{tmp_path / 'r.db'}"
    search = ("search", str(file), "--target-acc", "0.2", "--trials", "3", "--db", db)
    with monkeypatch.context() as patch:
        patch.setattr(runner_module, "train", _disk_full)
        code, out = _invoke(*search)
    assert code == 1, out
    assert "stopped after 3 faults of its machine in a row" in out
    study = optuna.load_study(study_name="faulty@0.2", storage=db)
    # Not infeasible, not counted: unanswered.
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * 3
    assert all("No space left" in t.user_attrs["unanswered"] for t in study.trials)
    assert {r.status for r in Store(db, create=False).runs("faulty")} == {"interrupted"}

    code, out = _invoke(*search, "--format", "json")
    assert code == 0, out
    assert json.loads(out[out.index("{") :])["trials"] == 3
    study = optuna.load_study(study_name="faulty@0.2", storage=db)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 3
    assert all(t.user_attrs["accuracy"] > 0 for t in complete)  # trained, not infeasible
    assert "failed" not in {r.status for r in Store(db, create=False).runs("faulty")}


def _disk_full(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_trial_equal_to_a_stored_baseline_reuses_its_run(tmp_path: Path) -> None:
    file, db = _sweep_file(tmp_path, "reuse"), f"sqlite:///{tmp_path / 'r.db'}"
    code, out = _invoke("sweep", str(file), "--db", db)  # the baseline hbfp8
    assert code == 0, out
    [baseline] = Store(db, create=False).runs("reuse")
    code, out = _invoke("search", str(file), "--target-acc", "0.05", "--trials", "2", "--db", db)
    assert code == 0, out
    study = optuna.load_study(study_name="reuse@0.05", storage=db)
    first, second = study.trials[:2]
    # The hbfp8 anchor is the baseline (written as rules per layer group, the same schedule),
    # and the booster anchor is written as Accuracy Booster.
    assert first.user_attrs["anchor"] == "hbfp8"
    assert first.user_attrs["schedule"] == {"format": "hbfp8"}
    assert first.values[0] == baseline.density
    assert second.user_attrs["schedule"] == {
        "booster": {"low": "hbfp4", "high": "hbfp6", "last_epochs": 1}
    }
    runs = Store(db, create=False).runs("reuse")
    assert len(runs) == 2  # the baseline, reused, and the booster trial
    assert {r.id for r in runs if r.trial_number == 0} == {baseline.id}


def test_optuna_dashboard_shows_each_trials_constraint_and_the_objectives_name(
    tmp_path: Path,
) -> None:
    """Checked against a real optuna-dashboard server's API, on localhost."""
    file, db = _sweep_file(tmp_path, "watched"), f"sqlite:///{tmp_path / 'r.db'}"
    code, out = _invoke("search", str(file), "--target-acc", "0.3", "--trials", "2", "--db", db)
    assert code in (0, 1), out  # 1: no trial reached the target, which is fine here
    server = make_server("127.0.0.1", 0, optuna_dashboard.wsgi(db), handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}/api/studies"
        [study] = json.load(urllib.request.urlopen(base, timeout=30))["study_summaries"]
        detail = json.load(urllib.request.urlopen(f"{base}/{study['study_id']}", timeout=30))
    finally:
        server.shutdown()
    assert detail["objective_names"] == ["density vs FP32"]
    finished = [t for t in detail["trials"] if t["state"] == "Complete"]
    assert len(finished) == 2
    stored = {t.number: t for t in optuna.load_study(study_name="watched@0.3", storage=db).trials}
    for trial in finished:
        accuracy = stored[trial["number"]].user_attrs["accuracy"]
        assert trial["constraints"] == [pytest.approx(0.3 - accuracy)]


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass
