"""One run on two processes (gloo, on the CPU) is the run of one process on the same global
batch, within float tolerance: DDP's gradients, the shares' losses, the quantized layers."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch.multiprocessing as mp

from hbfp_dse.errors import UserError
from hbfp_dse.training.config import TrainConfig
from hbfp_dse.training.distributed import process_group
from hbfp_dse.training.trainer import train

CONFIG: dict[str, Any] = {
    "model": "mlp",
    "train_size": 96,
    "test_size": 64,
    "epochs": 2,
    "batch_size": 32,  # shares of 16: whole blocks of hbfp4_b16 along the batch
    "device": "cpu",
}
TOLERANCE = 1e-6  # measured: 1e-8 relative (float sums in another order)

pytestmark = pytest.mark.usefixtures("eager_quantizer")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _process(rank: int, world: int, port: int, config: dict[str, Any], out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        HBFP_DSE_COMPILE="0",
    )
    with process_group("cpu"):
        try:
            result = train(TrainConfig.model_validate(config))
            records = [dataclasses.asdict(r) for r in result.epochs]
            outcome: dict[str, Any] = {"status": result.status, "epochs": records}
        except UserError as err:
            outcome = {"error": str(err)}
    Path(out, f"rank{rank}.json").write_text(json.dumps(outcome))


def untimed(outcome: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in epoch.items() if k not in ("seconds", "images_per_s")}
        for epoch in outcome["epochs"]
    ]


def in_two_processes(config: dict[str, Any], tmp_path: Path) -> list[dict[str, Any]]:
    mp.spawn(_process, args=(2, free_port(), config, str(tmp_path)), nprocs=2)
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["fp32", "hbfp4_b16"])
def test_two_processes_train_the_run_of_one(tmp_path: Path, schedule: str) -> None:
    config = CONFIG | {"schedule": schedule}
    alone = train(TrainConfig.model_validate(config))
    leader, other = in_two_processes(config, tmp_path)
    assert leader["status"] == other["status"] == alone.status == "done"
    assert untimed(leader) == untimed(other)  # every process saw the same sums
    for together, single in zip(leader["epochs"], alone.epochs, strict=True):
        for key in ("train_loss", "test_loss"):
            assert together[key] == pytest.approx(getattr(single, key), rel=TOLERANCE), key
        for key in ("train_acc", "test_acc"):  # at most one prediction on a knife's edge
            assert abs(together[key] - getattr(single, key)) <= 1 / 64, key


def test_batch_norm_on_several_cpu_processes_is_refused(tmp_path: Path) -> None:
    outcomes = in_two_processes(CONFIG | {"model": "cnn", "epochs": 1}, tmp_path)
    for outcome in outcomes:
        assert "BatchNorm trains on several processes on CUDA only" in outcome["error"]


@pytest.mark.slow
def test_torchrun_trains_one_run_and_the_leader_reports_it(tmp_path: Path) -> None:
    file = tmp_path / "run.yaml"
    file.write_text(json.dumps(CONFIG | {"epochs": 1, "schedule": "hbfp4_b16"}))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", "2", "-m", "hbfp_dse", "train", str(file), "--format", "json"]
    env = {**os.environ, "HBFP_DSE_COMPILE": "0", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    reported = json.loads(done.stdout)  # one document: the leader's
    assert reported["status"] == "done"
    assert len(reported["epochs"]) == 1
