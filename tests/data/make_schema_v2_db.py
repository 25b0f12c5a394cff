"""Make ``results-schema-v2.db``: a results store in schema version 2, the last before Alembic.

It was run against commit 8797f37001e7bc40d9578f6f7e27af2c16921205 of main, whose store it
imports, with nothing trained:

    git worktree add /tmp/main-head 8797f37001e7bc40d9578f6f7e27af2c16921205
    PYTHONPATH=/tmp/main-head .venv/bin/python tests/data/make_schema_v2_db.py \
        tests/data/results-schema-v2.db

The store holds one sweep ``legacy`` with three runs: ``done`` with two epochs, ``interrupted``
after one epoch, and ``pending``.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

from hbfp_dse.experiments.store import SCHEMA_VERSION, Store
from hbfp_dse.training.trainer import EpochRecord

PROVENANCE = {
    "git_commit": "8797f37001e7bc40d9578f6f7e27af2c16921205",
    "git_dirty": False,
    "python_version": "3.11",
    "torch_version": "2.4",
    "hbfp_version": "0.1.0",
    "host": "legacy-host",
}
FORMATS = {"layers.1": "hbfp8", "layers.3": "hbfp8"}


def planned(label: str, seed: int) -> dict[str, object]:
    return {
        "run_hash": f"{label}-{seed}",
        "config_id": label,
        "label": label,
        "kind": "baseline",
        "config": {"model": "mlp", "dataset": "mnist-5k", "epochs": 2, "seed": seed},
        "seed": seed,
        "density": 4.0,
        "density_vs_bf16": 1.5,
        "mac_share": {"hbfp8": 1.0},
        "schedule": [{"epochs": [0, 1], "formats": FORMATS}],
    }


def epoch(number: int, test_acc: float) -> EpochRecord:
    return EpochRecord(number, 1.5, 0.5, 1.25, test_acc, 0.1, 2.0, 500.0, FORMATS)


def main(path: Path) -> None:
    assert SCHEMA_VERSION == 2
    store = Store(f"sqlite:///{path}")
    runs = [planned("hbfp8", 0), planned("hbfp8", 1), planned("hbfp8", 2)]
    registered = store.register("legacy", "name: legacy\n", PROVENANCE, runs)
    sweep_id, (done, interrupted, _pending) = registered
    for run_id, worker, epochs in ((done, "legacy-host:11", 2), (interrupted, "legacy-host:12", 1)):
        claimed = store.claim(sweep_id, worker)
        assert claimed is not None
        assert claimed.id == run_id
        store.start_epoch(run_id, 0, "cpu")
        for number in range(epochs):
            store.record_epoch(run_id, epoch(number, (0.45, 0.55)[number]))
    store.finish(done, "done", device="cpu", final_acc=0.55, best_acc=0.55)
    store.interrupt(interrupted, "legacy-host:12")
    store.close()
    with sqlite3.connect(path) as raw:
        raw.execute("VACUUM")
    raw.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
