"""Make ``sweep-schema-v2/``: a real sweep stored by the schema before Alembic, with an
interrupted run and its checkpoint, to be resumed by the current code.

It was run against commit 8797f37001e7bc40d9578f6f7e27af2c16921205 of main, whose store, runner
and trainer it uses:

    git worktree add /tmp/old-main 8797f37001e7bc40d9578f6f7e27af2c16921205
    cd /tmp/old-main && HBFP_DSE_COMPILE=0 PYTHONPATH=/tmp/old-main \
        /work/main/.venv/bin/python /work/main/tests/data/make_sweep_v2_db.py \
        /work/main/tests/data/sweep-schema-v2

``sweep-v2.yaml`` (beside this script) is the sweep: three baselines of the small CNN, two
epochs each. The first two runs finish; the third is interrupted after its first epoch, which
leaves ``results.checkpoints/run-3.pt`` beside ``results.db``.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from hbfp_dse.experiments.spec import load_sweep

from hbfp_dse.experiments.runner import WorkerOptions, execute_run, register_sweep
from hbfp_dse.experiments.store import Store


class StopAfterFirstEpoch:
    def on_epoch_end(self, record: object) -> bool:
        raise KeyboardInterrupt


def main(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    sweep_file = Path(__file__).with_name("sweep-v2.yaml")
    spec, text = load_sweep(sweep_file)
    store = Store(f"sqlite:///{target / 'results.db'}")
    sweep_id, run_ids = register_sweep(store, spec, text, sweep_file, retry_failed=False)
    options = WorkerOptions(device="cpu")
    for index, run_id in enumerate(run_ids):
        run = store.claim(sweep_id, "legacy-host:1", run_ids=[run_id])
        assert run is not None
        callbacks = [StopAfterFirstEpoch()] if index == 2 else []
        with contextlib.suppress(KeyboardInterrupt):  # the third run: interrupted, as Ctrl-C
            execute_run(store, run, "legacy-host:1", options, callbacks=callbacks)
    store.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
