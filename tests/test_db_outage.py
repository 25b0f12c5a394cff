"""The PostgreSQL test server stopped mid-sweep, for real: a sweep rides out a minute without
its database and finishes with every epoch stored exactly once; when the database stays away
longer than the retry budget, the sweep exits 1 with a clear message, and rerunning it once
the server is back loses nothing.

The tests stop and start the test server with conftest's ``pg_ctl``: the command in
``HBFP_DSE_TEST_PG_CTL`` for ``.ci/postgres.sh``'s server under CI, or pg_ctl for the session's
throwaway cluster (tests/pg_cluster.py).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from console import hbfp_dse

from hbfp_dse.experiments.store import RunRecord, Store

OUTAGE_S = 65

# Four runs of several seconds each: the outage comes while one of them trains (its first
# epoch is stored when the server is stopped, which takes a moment, with three to go).
SWEEP = """name: {name}
base:
  model: mlp
  dataset: mnist-5k
  train_size: 2048
  test_size: 128
  batch_size: 16
  epochs: 4
  device: cpu
  optimizer: {{name: sgd, lr: 0.02}}
baselines: [fp32]
seeds: [0, 1, 2, 3]
"""

pytestmark = pytest.mark.slow


@pytest.fixture
def server(pg_ctl: list[str]) -> Iterator[list[str]]:
    """The command that controls the test server; it is running again after the test."""
    yield pg_ctl
    subprocess.run([*pg_ctl, "start"], capture_output=True, check=False)


def stored(url: str, sweep: str) -> list[RunRecord]:
    store = Store(url, create=False, retry_for=0)
    try:
        return store.runs(sweep, with_epochs=True)
    finally:
        store.close()


def start_sweep(tmp_path: Path, url: str, name: str, env: dict[str, str]) -> subprocess.Popen[str]:
    file = tmp_path / f"{name}.yaml"
    file.write_text(SWEEP.format(name=name))
    command = [hbfp_dse(), "sweep", str(file), "--db", url, "--checkpoint-dir", str(tmp_path)]
    return subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "HBFP_DSE_COMPILE": "0", **env},
    )


def wait_for_first_epoch(process: subprocess.Popen[str], url: str, name: str) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the sweep ended before the outage:\n{process.communicate()[0]}")
        try:
            if any(run.epochs for run in stored(url, name)):
                return
        except Exception:  # the sweep is still creating its tables
            pass
        time.sleep(0.2)
    pytest.fail("no epoch was stored within 240 s")


def control(server: list[str], action: str) -> None:
    subprocess.run([*server, action], capture_output=True, check=True, timeout=120)


def assert_every_epoch_stored_once(url: str, name: str) -> list[RunRecord]:
    runs = stored(url, name)
    assert [(run.status, [e.epoch for e in run.epochs]) for run in runs] == [
        ("done", [0, 1, 2, 3])
    ] * 4
    return runs


def test_a_sweep_rides_out_a_database_restart_of_a_minute(
    tmp_path: Path, pg_url: str, server: list[str]
) -> None:
    name = f"outage-{tmp_path.name[-8:]}"
    process = start_sweep(tmp_path, pg_url, name, {})
    wait_for_first_epoch(process, pg_url, name)
    control(server, "stop")
    time.sleep(OUTAGE_S)
    control(server, "start")
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    assert "unreachable" in output
    assert "reachable again after" in output
    runs = assert_every_epoch_stored_once(pg_url, name)
    assert all(run.attempts == 1 for run in runs)  # no run was taken over or restarted


def test_a_database_gone_for_longer_stops_the_sweep_and_the_rerun_loses_nothing(
    tmp_path: Path, pg_url: str, server: list[str]
) -> None:
    name = f"gone-{tmp_path.name[-8:]}"
    process = start_sweep(tmp_path, pg_url, name, {"HBFP_DSE_DB_RETRY_S": "3"})
    wait_for_first_epoch(process, pg_url, name)
    control(server, "stop")
    try:
        output, _ = process.communicate(timeout=120)
    finally:
        control(server, "start")
    assert process.returncode == 1, output
    assert "unreachable for 3 s" in output
    assert "run the same command again once it is back" in output
    assert "Traceback" not in output

    rerun = start_sweep(tmp_path, pg_url, name, {})
    output, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, output
    runs = assert_every_epoch_stored_once(pg_url, name)
    assert sorted(run.attempts for run in runs)[-1] == 2  # the run in flight, resumed
