"""What a checkpoint saves and restores: the training state and every RNG a run draws from.

The file is a ``torch.save`` of ``{"model", "optimizer", "scheduler", "history", "rng"}``,
``rng`` holding ``{"torch", "cuda", "numpy", "python", "quant"}`` (``cuda``: the generator
state of the run's GPU, or none; files written before held every GPU's; ``quant``: the
stochastic-rounding noise stream's [seed, calls]), and ``owner`` (the
``CheckpointOwner`` as a dict) when the run it belongs to is known. Runs resume across upgrades,
so this layout must not change: files without ``owner`` were written before it and still load.

Each save goes to a temporary file of its writer, is fsynced, and replaces the checkpoint,
whose previous version is kept beside it (``run.pt`` → ``run.prev.pt``). A file that cannot be
read, or that belongs to another run, is set aside (renamed) with a warning and never used.
"""

from __future__ import annotations

import os
import pickle
import random
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..formats import NoiseStream
from .results import EpochRecord

_LAYOUT = frozenset({"model", "optimizer", "scheduler", "history", "rng"})
# What torch.load raises on a truncated, corrupt or foreign file.
_UNREADABLE = (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError)


class CheckpointWarning(UserWarning):
    """A checkpoint was set aside: the run resumes from an older one or starts over."""


@dataclass(frozen=True)
class CheckpointOwner:
    """The run a checkpoint belongs to: its store, its hash there, and the attempt writing it.
    Loading refuses another store's or run's file; the attempt only tells writers apart."""

    store_id: str
    run_hash: str
    attempt: int

    def owns(self, stamp: object) -> bool:
        if stamp is None:
            return True  # written before checkpoints were stamped
        if not isinstance(stamp, dict):
            return False
        return (stamp.get("store_id"), stamp.get("run_hash")) == (self.store_id, self.run_hash)


class Checkpointed(Protocol):
    """The parts of a run's live state a checkpoint carries (``device``: where to load it;
    ``seed``: the run's, from which a GPU generator without a saved state is seeded)."""

    device: torch.device
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    quant_noise: NoiseStream
    history: list[EpochRecord]

    @property
    def seed(self) -> int: ...

    @property
    def stochastic(self) -> bool:
        """Whether the run rounds anything stochastically (draws from ``quant_noise``)."""
        ...


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def previous_checkpoint(path: Path) -> Path:
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_checkpoint(state: Checkpointed, path: Path, owner: CheckpointOwner | None = None) -> None:
    """Write durably: a crash at any point leaves the checkpoint or its previous one whole."""
    saved: dict[str, Any] = {
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "history": [asdict(record) for record in state.history],
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": [torch.cuda.get_rng_state(state.device)] if state.device.type == "cuda" else [],
            "numpy": _numpy_state(),
            "python": _python_state(),
            "quant": state.quant_noise.state(),
        },
    }
    if owner is not None:
        saved["owner"] = asdict(owner)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path, owner)
    try:
        with tmp.open("wb") as file:
            torch.save(saved, file)
            file.flush()
            os.fsync(file.fileno())
        if path.exists():
            os.replace(path, previous_checkpoint(path))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_directory(path.parent)


def load_checkpoint(state: Checkpointed, path: Path, owner: CheckpointOwner | None = None) -> bool:
    """Restore the checkpoint at ``path``, or its previous one when it is missing or set aside;
    False when neither is usable (the run starts over)."""
    for candidate in (path, previous_checkpoint(path)):
        saved = _read(candidate, owner)
        if saved is not None:
            _restore(state, saved)
            return True
    return False


def load_model_weights(model: nn.Module, path: Path) -> None:
    """Only the model's weights from the checkpoint at ``path`` (a run's, by ``sweep`` or
    ``train --checkpoint``); a file that is none, or of another model, is a user error."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"checkpoint {path} does not exist") from None
    except _UNREADABLE as err:
        raise UserError(f"checkpoint {path} cannot be read: {err}") from None
    if not isinstance(saved, dict) or "model" not in saved:
        raise UserError(f"checkpoint {path} is not an hbfp-dse checkpoint")
    try:
        model.load_state_dict(saved["model"])
    except RuntimeError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"checkpoint {path} holds another model: {first}") from None


def remove_checkpoint(path: Path) -> None:
    """The checkpoint, its previous one and temporary files a crashed writer left."""
    for stale in [path, previous_checkpoint(path), *path.parent.glob(f"{path.name}.*.tmp")]:
        stale.unlink(missing_ok=True)


def _temporary(path: Path, owner: CheckpointOwner | None) -> Path:
    # Per writer: an old owner of a run still saving must not write the new owner's file.
    writer = f"attempt-{owner.attempt}" if owner is not None else f"pid-{os.getpid()}"
    return path.with_name(f"{path.name}.{writer}.tmp")


def _fsync_directory(directory: Path) -> None:
    """Makes the renames durable: without it a crash may forget them."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _read(path: Path, owner: CheckpointOwner | None) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except _UNREADABLE as err:
        _set_aside(path, "unreadable", f"cannot be read ({err})")
        return None
    if not isinstance(saved, dict) or not saved.keys() >= _LAYOUT:
        _set_aside(path, "unreadable", "is not a checkpoint")
        return None
    if owner is not None and not owner.owns(saved.get("owner")):
        _set_aside(path, "foreign", f"belongs to another run ({saved.get('owner')})")
        return None
    return saved


def _set_aside(path: Path, why: str, problem: str) -> None:
    aside = path.with_name(f"{path.name}.{why}-{time.time_ns()}")
    os.replace(path, aside)
    warnings.warn(
        f"checkpoint {path} {problem}; set aside as {aside.name}", CheckpointWarning, stacklevel=4
    )


def _restore(state: Checkpointed, saved: dict[str, Any]) -> None:
    state.model.load_state_dict(saved["model"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.scheduler.load_state_dict(saved["scheduler"])
    state.history = [EpochRecord(**record) for record in saved["history"]]
    rng = saved["rng"]
    torch.set_rng_state(rng["torch"].cpu())
    if state.device.type == "cuda":
        saved_state = gpu_generator_state(rng["cuda"], state.device.index or 0)
        if saved_state is not None:
            torch.cuda.set_rng_state(saved_state.cpu(), state.device)
        else:  # trained on the CPU so far: a seed of its own for each epoch it resumes at
            with torch.cuda.device(state.device):
                torch.cuda.manual_seed(state.seed * 10_007 + len(state.history))
    _set_numpy_state(rng["numpy"])
    _set_python_state(rng["python"])
    _set_quant_state(state, rng["quant"])


def gpu_generator_state(saved: list[torch.Tensor], index: int) -> torch.Tensor | None:
    """The saved generator state a run resuming on GPU ``index`` continues: the one state of
    its GPU; from a file holding every GPU's (as files once did), that of GPU ``index`` where
    the file has one, else the first; none after a CPU."""
    if not saved:
        return None
    return saved[index] if len(saved) > 1 and index < len(saved) else saved[0]


def _set_quant_state(state: Checkpointed, saved: torch.Tensor) -> None:
    if saved.dtype == torch.int64 and saved.shape == (2,):
        # The count only: each process of a run keeps its own seed, and the leader saves.
        state.quant_noise.set_state(torch.tensor([state.quant_noise.seed, int(saved[1])]))
        return
    # Before counter-based noise, stochastic rounding drew from a torch.Generator, whose
    # stream the counter cannot continue: the run goes on with its own fresh stream.
    if not state.stochastic:
        return  # nothing drew from it
    warnings.warn(
        "this checkpoint's stochastic-rounding noise came from a torch.Generator; the "
        "resumed run continues with the counter-based stream from its start",
        CheckpointWarning,
        stacklevel=4,
    )


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
