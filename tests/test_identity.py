"""Run identities: the hash of a configuration is the one every earlier release gave, and a
field added with a default leaves it unchanged, so upgrading never re-registers stored runs."""

from __future__ import annotations

import hashlib
import json
import typing
from pathlib import Path

import pytest
import torch
from pydantic import BaseModel

from hbfp_dse.experiments.identity import VERSIONED_FIELDS, config_hash
from hbfp_dse.experiments.sweepfile import expand, load_sweep, on_device, parse_sweep
from hbfp_dse.training.config import DEFAULT_VALIDATION, TrainConfig

ADDED_SINCE = {"image_size", "loader_workers", "context_length", "analysis", "validation"}
SWEEPS = sorted((Path(__file__).parent.parent / "sweeps").glob("*.yaml"))


def hash_before_versioning(config: TrainConfig) -> str:
    """How releases before hash versioning named a run (an independent reference)."""
    # The fields added since (at their defaults here) did not exist then.
    data = config.model_dump(mode="json", exclude={"device", *ADDED_SINCE})
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def models(root: type[BaseModel]) -> dict[str, type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    pending = [root]
    while pending:
        model = pending.pop()
        if model.__name__ in found:
            continue
        found[model.__name__] = model
        for field in model.model_fields.values():
            annotations = [field.annotation]
            while annotations:
                annotation = annotations.pop()
                if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                    pending.append(annotation)
                annotations.extend(typing.get_args(annotation))
    return found


def test_a_configuration_keeps_the_hash_earlier_releases_gave() -> None:
    config = TrainConfig.model_validate(
        {"model": "resnet20", "dataset": "cifar10", "epochs": 160, "seed": 3, "device": "cpu"}
    )
    assert config_hash(config) == hash_before_versioning(config) == "836e50f83a36c3db"


@pytest.mark.parametrize("sweep", SWEEPS, ids=[path.stem for path in SWEEPS])
def test_every_run_of_the_shipped_sweeps_keeps_its_hash_without_a_validation_split(
    sweep: Path,
) -> None:
    spec, _ = load_sweep(sweep)
    base = spec.base.model_copy(update={"validation": 0.0})
    for run in expand(on_device(spec.model_copy(update={"base": base}), "cpu")):
        assert run.run_hash == hash_before_versioning(run.config)


def test_a_sweeps_validation_split_is_part_of_its_runs_identity() -> None:
    # Holding images out changes what a run trains on: its runs are not the earlier ones.
    spec = parse_sweep("name: s\nbaselines: [fp32]\n")
    assert spec.base.validation == DEFAULT_VALIDATION
    [run] = expand(on_device(spec, "cpu"))
    without = run.config.model_copy(update={"validation": 0.0})
    assert run.run_hash != config_hash(without) == hash_before_versioning(without)
    explicit = parse_sweep("name: s\nbase: {validation: 0}\nbaselines: [fp32]\n")
    assert explicit.base.validation == 0.0


def test_watching_a_run_is_no_part_of_its_identity() -> None:
    plain = TrainConfig.model_validate({"model": "mlp", "device": "cpu"})
    watched = TrainConfig.model_validate({"model": "mlp", "device": "cpu", "analysis": {}})
    assert config_hash(watched) == config_hash(plain) == hash_before_versioning(plain)


def test_the_kind_of_device_is_part_of_a_runs_identity_and_its_index_is_not() -> None:
    cpu = TrainConfig.model_validate({"model": "mlp", "device": "cpu"})
    cuda, cuda1 = (cpu.model_copy(update={"device": name}) for name in ("cuda", "cuda:1"))
    assert config_hash(cuda) == config_hash(cuda1) != config_hash(cpu)
    assert config_hash(cpu) == hash_before_versioning(cpu)  # CPU runs kept their identity


def test_a_sweep_pins_auto_to_the_kind_of_device_here() -> None:
    spec, _ = load_sweep(SWEEPS[0])
    assert spec.base.device == "auto"
    here = "cuda" if torch.cuda.is_available() else "cpu"
    assert on_device(spec, None).base.device == here
    assert on_device(spec, "cuda:1").base.device == "cuda:1"
    pinned = on_device(
        spec.model_copy(update={"base": spec.base.model_copy(update={"device": "cpu"})}), None
    )
    assert pinned.base.device == "cpu"


class GrownConfig(TrainConfig):
    """A later release's configuration: one more field, with a default."""

    label_smoothing: float = 0.0


def test_a_field_added_with_its_default_leaves_the_hash_alone() -> None:
    data = {"model": "mlp", "epochs": 3, "seed": 1}
    today = config_hash(TrainConfig.model_validate(data))
    assert config_hash(GrownConfig.model_validate(data)) == today
    # Set to anything else, it is part of what the run is.
    assert config_hash(GrownConfig.model_validate({**data, "label_smoothing": 0.1})) != today


def test_fields_added_since_versioning_have_defaults() -> None:
    # A later field without a default would be in every hash: every stored run re-registered.
    # Never add a new field to VERSIONED_FIELDS: that too changes the hashes.
    found = models(TrainConfig)
    assert set(VERSIONED_FIELDS) <= set(found)
    for name, model in found.items():
        versioned = VERSIONED_FIELDS.get(name, frozenset())
        assert versioned <= set(model.model_fields), f"{name} lost a field its hash counts"
        later = [f for n, f in model.model_fields.items() if n not in versioned]
        assert not [f for f in later if f.is_required()], name
