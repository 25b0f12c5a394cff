"""A model's quantized layers and per-sample MACs, counted once per model and data shape.

Counting builds the model, which takes torch and seconds. The counts are kept in memory, and,
for the shipped models and datasets, on disk in ``$HBFP_DSE_CACHE`` (default
``$XDG_CACHE_HOME/hbfp-dse`` or ``~/.cache/hbfp-dse``; ``off``: nowhere), so that ``hbfp-dse
cost`` answers the next time without torch. A file is keyed by the shape fields, the package's
source and the torch and torchvision versions: any change to what could change a count misses.
Models and datasets named by import path, and image folders, are counted every time.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from ..cache import cache_dir
from ..cost.gemms import AttentionShape, LayerMACs
from ..emulation import LayerInfo
from ..lazy import lazy_module
from ..training.config import FOLDER_DATASET, TrainConfig, is_import_path

assembly = lazy_module("hbfp_dse.training.assembly")
macs_module = lazy_module("hbfp_dse.cost.macs")

PACKAGE = Path(__file__).resolve().parents[1]
# What decides a model's layers and their shapes.
SHAPE_FIELDS = (
    "model",
    "dataset",
    "data_dir",
    "image_size",
    "context_length",
    "quantize_attention",
)
Shape = tuple[tuple[str, object], ...]
Counted = tuple[tuple[LayerInfo, ...], tuple[LayerMACs, ...]]


def shape_of(config: TrainConfig) -> Shape:
    return tuple((name, getattr(config, name)) for name in SHAPE_FIELDS)


@functools.cache
def layers_and_macs(shape: Shape) -> Counted:
    """The quantized layers and MACs of the model of ``shape`` (``shape_of``); a sweep of 10^4
    runs prices one model 10^4 times."""
    path = _cache_file(shape)
    if path is not None:
        found = _read(path)
        if found is not None:
            return found
    config = TrainConfig.model_validate(dict(shape))
    built = assembly.model_for(config, attention=config.quantize_attention)
    counted = (
        tuple(built.layers),
        tuple(
            macs_module.count_macs(built.model, built.input_shape, input_dtype=built.input_dtype)
        ),
    )
    if path is not None:
        _write(path, counted)
    return counted


def _cache_file(shape: Shape) -> Path | None:
    fields = dict(shape)
    model, dataset = str(fields["model"]), str(fields["dataset"])
    user_code = is_import_path(model) or is_import_path(dataset)
    directory = cache_dir()
    if directory is None or user_code or dataset == FOLDER_DATASET:
        return None
    key = json.dumps([_code_digest(), [list(item) for item in shape]], default=str)
    return directory / "shapes" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


@functools.cache
def _code_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE).as_posix().encode())
        digest.update(path.read_bytes())
    for distribution in ("torch", "torchvision"):
        digest.update(metadata.version(distribution).encode())
    return digest.hexdigest()


def _read(path: Path) -> Counted | None:
    """The counts in ``path``; None where there is no readable one (then they are counted)."""
    try:
        data = json.loads(path.read_text())
        layers = tuple(LayerInfo(**layer) for layer in data["layers"])
        return layers, tuple(_layer_macs(entry) for entry in data["macs"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _layer_macs(entry: dict[str, Any]) -> LayerMACs:
    attention = entry.pop("attention")
    shape = None if attention is None else AttentionShape(**attention)
    return LayerMACs(**entry, attention=shape)


def _write(path: Path, counted: Counted) -> None:
    layers, macs = counted
    text = json.dumps({"layers": [asdict(x) for x in layers], "macs": [asdict(m) for m in macs]})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    except OSError:
        return  # an unwritable cache only costs the next command the count
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
        os.replace(name, path)  # readers see a whole file or none
    except OSError:
        Path(name).unlink(missing_ok=True)  # a full disk leaves no half-written file
