"""``hbfp-dse train`` through the command line (typer's CliRunner)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.progress import Progress
from typer.testing import CliRunner

from hbfp_dse.cli.app import app
from hbfp_dse.cli.progress import TrainingBars

SMALL = "model: mlp\ntrain_size: 96\ntest_size: 64\nbatch_size: 32\ndevice: cpu\n"


pytestmark = pytest.mark.usefixtures("eager_quantizer")


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def yaml_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def run_json(runner: CliRunner, *args: str) -> dict:
    result = runner.invoke(app, ["train", *args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def assert_user_error(result, *fragments: str) -> None:
    """Exit code 2 and one ``error:`` message naming the problem, never a traceback."""
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ")
    assert [line for line in result.stderr.splitlines() if line.startswith("error")] == [
        result.stderr.splitlines()[0]
    ]
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for fragment in fragments:
        assert fragment in result.stderr


def test_train_with_flags(runner: CliRunner) -> None:
    out = run_json(
        runner, "--model", "mlp", "--epochs", "1", "--batch-size", "500", "--lr", "0.05",
        "--seed", "1", "--device", "cpu", "--schedule", "fp32",
    )  # fmt: skip
    assert out["status"] == "done"
    assert out["device"] == "cpu"
    assert len(out["epochs"]) == 1
    epoch = out["epochs"][0]
    assert set(epoch["formats"].values()) == {"fp32"}
    assert epoch["lr"] == pytest.approx(0.05 * 0.04)  # one-cycle starts at 4% of the peak
    assert out["final_test_acc"] == epoch["test_acc"] > 0.3  # it learns: 4,000 real digits
    assert out["density_vs_fp32"] == 1


def test_train_with_a_yaml_file_and_flags_overriding_it(runner: CliRunner, tmp_path: Path) -> None:
    path = yaml_file(tmp_path, SMALL + "epochs: 3\nschedule:\n  booster: {last_epochs: 1}\n")
    out = run_json(runner, str(path), "--epochs", "2")
    assert [e["epoch"] for e in out["epochs"]] == [0, 1]
    assert out["epochs"][0]["formats"] == {
        "layers.1": "hbfp6",
        "layers.3": "hbfp4",
        "layers.5": "hbfp6",
    }
    assert set(out["epochs"][1]["formats"].values()) == {"hbfp6"}


def test_booster_schedule_flag(runner: CliRunner, tmp_path: Path) -> None:
    path = yaml_file(tmp_path, SMALL + "epochs: 2\n")
    out = run_json(runner, str(path), "--schedule", "booster:hbfp3:hbfp8:1")
    assert out["epochs"][0]["formats"]["layers.3"] == "hbfp3"
    assert set(out["epochs"][1]["formats"].values()) == {"hbfp8"}


def test_table_output_reports_status_and_epochs(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", str(yaml_file(tmp_path, SMALL + "epochs: 1\n"))])
    assert result.exit_code == 0, result.output
    assert "status done" in result.stdout
    assert "fp32" in result.stdout


def test_checkpoint_flag_resumes(runner: CliRunner, tmp_path: Path) -> None:
    path = yaml_file(tmp_path, SMALL + "epochs: 1\n")
    ckpt = tmp_path / "run.pt"
    first = run_json(runner, str(path), "--checkpoint", str(ckpt))
    assert ckpt.exists()
    again = run_json(runner, str(path), "--checkpoint", str(ckpt))
    assert again["epochs"][0]["test_acc"] == first["epochs"][0]["test_acc"]


def test_a_bad_yaml_key_is_one_clear_error(runner: CliRunner, tmp_path: Path) -> None:
    path = yaml_file(tmp_path, SMALL + "epocs: 3\n")
    assert_user_error(runner.invoke(app, ["train", str(path)]), "epocs", "unknown key", str(path))


def test_a_bad_nested_value_names_its_key(runner: CliRunner, tmp_path: Path) -> None:
    path = yaml_file(tmp_path, SMALL + "optimizer:\n  name: lion\n")
    assert_user_error(runner.invoke(app, ["train", str(path)]), "optimizer.name")


def test_lr_over_an_optimizer_that_is_not_a_mapping(runner: CliRunner, tmp_path: Path) -> None:
    path = yaml_file(tmp_path, SMALL + "optimizer: sgd\n")
    assert_user_error(runner.invoke(app, ["train", str(path), "--lr", "0.05"]), "optimizer")


def test_a_bad_format_in_a_schedule_is_one_clear_error(runner: CliRunner, tmp_path: Path) -> None:
    path = yaml_file(tmp_path, SMALL + "schedule: hbfp99\n")
    assert_user_error(runner.invoke(app, ["train", str(path)]), "hbfp99")


def test_a_bad_layer_selector_is_one_clear_error(runner: CliRunner, tmp_path: Path) -> None:
    path = yaml_file(tmp_path, SMALL + "schedule:\n  - {format: hbfp4, layers: [conv9]}\n")
    assert_user_error(runner.invoke(app, ["train", str(path)]), "conv9", "matches none")


def test_a_yaml_syntax_error_names_the_line(runner: CliRunner, tmp_path: Path) -> None:
    path = yaml_file(tmp_path, SMALL + "epochs: [1\n")
    assert_user_error(runner.invoke(app, ["train", str(path)]), "YAML syntax error")


def test_a_missing_file_and_a_bad_device_are_user_errors(runner: CliRunner, tmp_path: Path) -> None:
    assert_user_error(runner.invoke(app, ["train", str(tmp_path / "no.yaml")]), "no such file")
    assert_user_error(runner.invoke(app, ["train", "--device", "tpu"]), "device")


def test_a_diverged_run_exits_1(runner: CliRunner, tmp_path: Path) -> None:
    path = yaml_file(tmp_path, SMALL + "epochs: 1\n")
    result = runner.invoke(app, ["train", str(path), "--lr", "1e30", "--format", "json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["status"] == "diverged"
    assert "Traceback" not in result.output


def test_missing_data_names_the_data_dir_flag(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--dataset", "cifar10", "--data-dir", str(tmp_path)])
    assert_user_error(result, str(tmp_path / "cifar-10-batches-py"), "--data-dir", "download")


def test_the_step_bar_weights_each_report_by_the_steps_it_covers() -> None:
    # On a GPU the trainer reports every 25 steps, the mean of those steps.
    progress = Progress(disable=True)
    bars = TrainingBars(progress)
    bars.on_start(2, 12, ())
    bars.on_step(0, 4, 1.0, 0.5)  # steps 0-4
    bars.on_step(0, 6, 4.5, 1.0)  # steps 5-6
    status = progress.tasks[1].fields["status"]
    assert status == "epoch 1 loss 2.000 acc 64.3%"  # (5 + 9) / 7, (2.5 + 2) / 7
    bars.on_step(1, 0, 0.25, 0.0)  # a new epoch starts its own mean
    assert progress.tasks[1].fields["status"] == "epoch 2 loss 0.250 acc 0.0%"
