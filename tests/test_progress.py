"""Progress off a terminal: a sweep's log gets one line per run started, epoch and run
finished, with accuracy, time and the time left."""

from __future__ import annotations

import pytest

from hbfp_dse.cli import progress as progress_module
from hbfp_dse.cli.common import err_console
from hbfp_dse.cli.progress import SweepProgress, duration, training_progress


def test_durations_read_as_people_write_them() -> None:
    assert [duration(s) for s in (4.4, 59.6, 187, 7500)] == [
        "4 s",
        "1 min 00 s",
        "3 min 07 s",
        "2 h 05 min",
    ]


def test_a_log_gets_a_line_per_run_epoch_and_finish_with_the_time_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = iter([0.0, 10.0, 70.0, 75.0, 200.0])
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(clock))
    assert not err_console.is_terminal  # as in a log file
    with training_progress() as progress, err_console.capture() as captured:
        assert progress.disable  # no bars, which a log would show only at the end
        display = SweepProgress(progress, total=4, already=1)  # clock 0: the sweep starts
        worker = "host:1"
        display(
            {
                "event": "start",
                "worker": worker,
                "run_id": 7,
                "label": "hbfp4",
                "seed": 0,
                "density": 18.95,
                "epochs": 2,
                "start_epoch": 0,
            }
        )  # 10
        display(
            {"event": "step", "worker": worker, "epoch": 0, "step": 10, "steps": 70, "loss": 1.5}
        )
        display(
            {
                "event": "epoch",
                "worker": worker,
                "run_id": 7,
                "epoch": 0,
                "test_acc": 0.5,
                "test_loss": 1.25,
                "seconds": 31.0,
            }
        )
        display(
            {"event": "finish", "worker": worker, "run_id": 7, "status": "done", "accuracy": 0.625}
        )  # 70
        display(
            {
                "event": "start",
                "worker": worker,
                "run_id": 8,
                "label": "booster",
                "seed": 1,
                "density": 15.3,
                "epochs": 2,
                "start_epoch": 1,
            }
        )  # 75
        display({"event": "finish", "worker": worker, "run_id": 8, "status": "failed"})  # 200
    assert captured.get().splitlines() == [
        "run 7 hbfp4 (seed 0) started: 2 epochs, density 18.95x",
        "run 7 hbfp4 epoch 1/2: test acc 50.00%, loss 1.2500, 31 s",
        "run 7 hbfp4 done, test acc 62.50% in 1 min 00 s; 2/4 finished, about 2 min 20 s left",
        "run 8 booster (seed 1) started: 2 epochs, density 15.30x, resumed after epoch 1",
        "run 8 booster failed in 2 min 05 s; 3/4 finished, about 1 min 40 s left",
    ]
