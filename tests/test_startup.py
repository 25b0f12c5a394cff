"""Commands that train nothing start without torch, and a model's counts are cached on disk.

How fast they start is measured by ``benchmarks/startup.py``; here only what makes them fast:
no torch (the biggest import by far, about 1.6 s here) and no model building for ``cost`` once
its counts are cached.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hbfp_dse.cache import CACHE_ENV
from hbfp_dse.experiments import model_shapes
from hbfp_dse.experiments.model_shapes import layers_and_macs, shape_of
from hbfp_dse.training.config import TrainConfig

# Runs the CLI in a fresh interpreter and prints whether torch was imported.
PROBE = """
import sys
from hbfp_dse.cli.app import app
try:
    app(sys.argv[1:])
except SystemExit as done:
    code = done.code
print("TORCH" if "torch" in sys.modules else "NO TORCH", code, file=sys.stderr)
"""
SWEEP = """\
name: tiny
base: {model: cnn, dataset: mnist-5k, epochs: 1, batch_size: 64, train_size: 128, test_size: 128}
baselines: [fp32]
seeds: [0]
"""
COST = ["cost", "--model", "cnn", "--dataset", "mnist-5k", "--schedule", "booster"]


def cli(*args: str, cache: Path) -> tuple[str, subprocess.CompletedProcess[str]]:
    env = os.environ | {CACHE_ENV: str(cache)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, check=False
    )
    last = done.stderr.strip().splitlines()[-1]
    return last, done


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("startup")
    (tmp / "tiny.yaml").write_text(SWEEP)
    db = f"sqlite:///{tmp}/results.db"
    line, done = cli("sweep", str(tmp / "tiny.yaml"), "--db", db, cache=tmp / "cache")
    assert line.endswith(" 0"), done.stderr
    return db


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["sweep", "--help"],
        ["search", "--help"],
        ["train", "--help"],
        ["formats"],
        ["formats", "hbfp4", "mxfp4_e2m1"],
        ["report"],
        ["report", "--format", "json"],
        ["best", "--target-acc", "0.01"],
        ["compare"],
    ],
)
def test_commands_that_train_nothing_never_import_torch(
    args: list[str], store: str, tmp_path: Path
) -> None:
    needs_store = args[0] in ("report", "best", "compare")
    line, done = cli(*args, *(["--db", store] if needs_store else []), cache=tmp_path)
    assert line == "NO TORCH 0", done.stdout + done.stderr
    assert done.stdout.strip()


def test_cost_counts_once_and_then_answers_without_torch(tmp_path: Path) -> None:
    first, done = cli(*COST, "--format", "json", cache=tmp_path)
    assert first == "TORCH 0", done.stderr
    second, again = cli(*COST, "--format", "json", cache=tmp_path)
    assert second == "NO TORCH 0", again.stderr
    assert json.loads(again.stdout) == json.loads(done.stdout)
    assert len(list((tmp_path / "shapes").glob("*.json"))) == 1


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    layers_and_macs.cache_clear()
    yield tmp_path
    layers_and_macs.cache_clear()


def counted_fresh(config: TrainConfig, monkeypatch: pytest.MonkeyPatch):
    with monkeypatch.context() as patch:
        patch.setenv(CACHE_ENV, "off")
        layers_and_macs.cache_clear()
        found = layers_and_macs(shape_of(config))
    layers_and_macs.cache_clear()
    return found


@pytest.mark.parametrize(
    "overrides",
    [{"model": "cnn", "dataset": "mnist-5k"}, {"model": "gpt", "dataset": "pydoc-topics"}],
)
def test_cached_counts_equal_counting_again(
    overrides: dict[str, str], cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = TrainConfig(**overrides)
    written = layers_and_macs(shape_of(config))
    layers_and_macs.cache_clear()
    read = layers_and_macs(shape_of(config))  # from the file
    assert read == written == counted_fresh(config, monkeypatch)
    assert any(m.attention is not None for m in read[1]) == (overrides["model"] == "gpt")


def test_a_damaged_cache_file_is_counted_again(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = TrainConfig(model="cnn", dataset="mnist-5k")
    expected = layers_and_macs(shape_of(config))
    [path] = (cache / "shapes").glob("*.json")
    path.write_text('{"layers": [')
    layers_and_macs.cache_clear()
    assert layers_and_macs(shape_of(config)) == expected
    assert json.loads(path.read_text())["layers"]  # rewritten whole


def test_another_shape_or_another_source_is_another_file(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = TrainConfig(model="cnn", dataset="mnist-5k")
    path = model_shapes._cache_file(shape_of(config))
    assert path is not None
    assert model_shapes._cache_file(shape_of(config.model_copy(update={"model": "mlp"}))) != path
    monkeypatch.setattr(model_shapes, "_code_digest", lambda: "edited source")
    assert model_shapes._cache_file(shape_of(config)) != path


def test_user_models_and_image_folders_are_never_cached(cache: Path) -> None:
    user = TrainConfig(model="mymodels:tiny", dataset="mnist-5k")
    folder = TrainConfig(model="cnn", dataset="imagefolder", data_dir="/data/imagenet")
    assert model_shapes._cache_file(shape_of(user)) is None
    assert model_shapes._cache_file(shape_of(folder)) is None


def test_a_failed_cache_write_leaves_no_file_behind(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(src: str, dst: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(model_shapes.os, "replace", full_disk)
    config = TrainConfig(model="cnn", dataset="mnist-5k")
    assert layers_and_macs(shape_of(config)) == counted_fresh(config, monkeypatch)
    assert list((cache / "shapes").iterdir()) == []
