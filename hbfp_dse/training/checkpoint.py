"""What a checkpoint saves and restores: the training state and every RNG a run draws from.

The file is a ``torch.save`` of ``{"model", "optimizer", "scheduler", "history", "rng"}``,
``rng`` holding ``{"torch", "cuda", "numpy", "python", "quant"}``. Runs resume across upgrades,
so this layout must not change.
"""

from __future__ import annotations

import os
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from .results import EpochRecord


class Checkpointed(Protocol):
    """The parts of a run's live state a checkpoint carries (``device``: where to load it)."""

    device: torch.device
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    quant_generator: torch.Generator
    history: list[EpochRecord]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save_checkpoint(state: Checkpointed, path: Path) -> None:
    """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
    saved = {
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "history": [asdict(record) for record in state.history],
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": _numpy_state(),
            "python": _python_state(),
            "quant": state.quant_generator.get_state(),
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(saved, tmp)
    os.replace(tmp, path)


def load_checkpoint(state: Checkpointed, path: Path) -> None:
    saved = torch.load(path, map_location=state.device, weights_only=True)
    state.model.load_state_dict(saved["model"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.scheduler.load_state_dict(saved["scheduler"])
    state.history = [EpochRecord(**record) for record in saved["history"]]
    rng = saved["rng"]
    torch.set_rng_state(rng["torch"].cpu())
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
    _set_numpy_state(rng["numpy"])
    _set_python_state(rng["python"])
    state.quant_generator.set_state(rng["quant"].cpu())


# weights_only loading accepts tensors and plain containers, so RNG states travel as those.
def _numpy_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "kind": kind,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "gauss": float(gauss),
    }


def _set_numpy_state(state: dict[str, Any]) -> None:
    keys = state["keys"].cpu().numpy().astype(np.uint32)
    np.random.set_state((state["kind"], keys, state["pos"], state["has_gauss"], state["gauss"]))


def _python_state() -> list[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _set_python_state(state: list[Any]) -> None:
    version, internal, gauss = state
    random.setstate((version, tuple(internal), gauss))
