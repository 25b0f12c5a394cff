"""Which device each local worker trains on."""

from __future__ import annotations

import re

import pytest

from hbfp_dse.errors import UserError
from hbfp_dse.experiments.placement import parse_gpus, place_workers
from hbfp_dse.experiments.runner import WorkerOptions

OPTIONS = WorkerOptions(threads=1)


def devices(placed: list[WorkerOptions]) -> list[str | None]:
    return [options.device for options in placed]


def test_cpu_workers_share_the_cpu_threads() -> None:
    placed = place_workers(WorkerOptions(), 2, "cpu")
    assert devices(placed) == [None, None]
    assert placed[0].threads is not None
    assert placed[0] == placed[1]
    assert place_workers(WorkerOptions(), 1, "cpu") == [WorkerOptions()]


def test_cuda_workers_take_a_gpu_each_in_turn() -> None:
    assert devices(place_workers(OPTIONS, 3, "cuda", gpu_count=4)) == ["cuda:0", "cuda:1", "cuda:2"]
    assert devices(place_workers(OPTIONS, 5, "cuda", [1, 3], gpu_count=4)) == [
        "cuda:1",
        "cuda:3",
        "cuda:1",
        "cuda:3",
        "cuda:1",
    ]
    # The command line's device overrides the file's.
    cuda_options = WorkerOptions(device="cuda", threads=1)
    assert devices(place_workers(cuda_options, 2, "cpu", gpu_count=2)) == ["cuda:0", "cuda:1"]


def test_one_gpu_asked_for_is_shared() -> None:
    assert devices(place_workers(OPTIONS, 2, "cuda:1", gpu_count=4)) == ["cuda:1", "cuda:1"]
    two = WorkerOptions(device="cuda:2", threads=1)
    assert devices(place_workers(two, 2, "cuda", gpu_count=4)) == ["cuda:2", "cuda:2"]


def test_without_gpus_cuda_runs_keep_their_device_and_fault_where_they_run() -> None:
    assert devices(place_workers(OPTIONS, 2, "cuda", gpu_count=0)) == [None, None]


@pytest.mark.parametrize(
    ("run_device", "gpus", "message"),
    [
        ("cpu", [0], "these runs train on cpu, not on CUDA"),
        ("cuda", [0, 2], "GPU 2 is not here; this machine has 2 GPU(s)"),
        ("cuda:1", [0], "the device is cuda:1, one GPU; give --device cuda"),
        ("cuda", [0, 1, 2], "--gpus names 3 GPUs for 2 worker(s)"),
    ],
)
def test_gpus_that_cannot_be_used(run_device: str, gpus: list[int], message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        place_workers(OPTIONS, 2, run_device, gpus, gpu_count=2)


def test_gpu_lists() -> None:
    assert parse_gpus("0,1,3") == [0, 1, 3]
    for bad in ("", "a", "0,0", "-1", "1,,2"):
        with pytest.raises(UserError, match="give distinct GPU indices"):
            parse_gpus(bad)
