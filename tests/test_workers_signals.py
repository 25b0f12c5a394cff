"""SIGTERM to ``hbfp-dse sweep --workers 2`` alone (a scheduler's stop) reaches its worker
processes: each marks its run interrupted, the command exits 130, and rerunning it finishes;
on SQLite and on the PostgreSQL test server."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from console import hbfp_dse
from sqlalchemy.exc import OperationalError

from hbfp_dse.errors import UserError
from hbfp_dse.experiments.store import RunRecord, Store, sqlite_path
from hbfp_dse.experiments.store.liveness import WorkerIdentity

# Two runs, one per worker, of ten epochs each (~3 s): both are caught in flight.
SWEEP = """name: signals
base:
  model: cnn
  dataset: mnist-5k
  train_size: 1024
  test_size: 128
  batch_size: 16
  epochs: 10
  device: cpu
baselines: [hbfp6]
seeds: [0, 1]
"""

STARTUP_S = 240
EXIT_S = 40


def sweep_command(file: Path, url: str) -> list[str]:
    return [hbfp_dse(), "sweep", str(file), "--workers", "2", "--db", url]


def environment() -> dict[str, str]:
    env = {**os.environ, "HBFP_DSE_COMPILE": "0", "OMP_NUM_THREADS": "1"}
    env.pop("HBFP_DSE_DB", None)
    return env


def stored_runs(url: str) -> list[RunRecord]:
    """The sweep's runs so far; none while the parent is still creating the database."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return []
    try:
        store = Store(url, create=False)
    except UserError:
        return []
    try:
        return store.runs("signals", with_epochs=True)
    except (OperationalError, UserError):  # the tables or the sweep are not there yet
        return []
    finally:
        store.close()


def wait_until_both_workers_train(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"hbfp-dse sweep exited with {process.returncode}:\n{log.read_text()}")
        running = [run for run in stored_runs(url) if run.status == "running"]
        if len(running) == 2 and all(run.epochs for run in running):
            return
        time.sleep(0.1)
    pytest.fail(f"the two workers were not both training within {STARTUP_S} s:\n{log.read_text()}")


def worker_pid(run: RunRecord) -> int:
    assert run.worker is not None
    identity = WorkerIdentity.parse(run.worker)
    assert identity is not None
    return identity.pid


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_sigterm_to_the_parent_interrupts_every_worker_and_the_sweep_resumes(
    tmp_path: Path, store_url: str
) -> None:
    file, log = tmp_path / "signals.yaml", tmp_path / "sweep.log"
    file.write_text(SWEEP)
    with log.open("wb") as out:
        process = subprocess.Popen(
            sweep_command(file, store_url),
            cwd=tmp_path,
            env=environment(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the signal reaches the parent only
        )
    try:
        wait_until_both_workers_train(process, store_url, log)
        training = stored_runs(store_url)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=EXIT_S)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = log.read_text()
    assert process.returncode == 130, output
    assert "interrupted" in output
    assert "Traceback" not in output

    workers = {worker_pid(run) for run in training}
    assert len(workers) == 2
    assert process.pid not in workers
    assert not [pid for pid in workers if is_alive(pid)], "no worker outlives the command"
    after = stored_runs(store_url)
    assert [(run.status, run.attempts) for run in after] == [("interrupted", 1)] * 2
    assert all(len(run.epochs) < 10 for run in after), "both runs were caught in flight"

    again = subprocess.run(
        sweep_command(file, store_url),
        cwd=tmp_path,
        env=environment(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=STARTUP_S,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert [(run.status, run.attempts) for run in stored_runs(store_url)] == [("done", 2)] * 2
