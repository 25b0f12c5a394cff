"""Where and with what results were made: a sweep's registration, and each attempt at a run
(what decides a run's numbers beside its configuration: the code, the device, the CPU
threads, TF32 and determinism)."""

from __future__ import annotations

import functools
import platform
import socket
import subprocess
from pathlib import Path

import torch

from .. import __version__
from ..training.devices import tf32_allowed
from .store import Environment, Provenance

PACKAGE = Path(__file__).resolve().parent.parent


def provenance(source: Path | None) -> Provenance:
    """A sweep's registration: the git state of its sweep file's folder."""
    return _provenance(source.parent if source else Path.cwd())


def environment(device: str, deterministic: bool) -> Environment:
    """An attempt at a run, as it starts: the git state of the code that trains it."""
    return Environment(
        **vars(_code_provenance()),
        device=device,
        cpu_threads=torch.get_num_threads(),
        tf32=tf32_allowed(),
        deterministic=deterministic,
    )


def _provenance(where: Path) -> Provenance:
    commit, dirty = _git_state(where)
    return Provenance(
        git_commit=commit,
        git_dirty=dirty,
        python_version=platform.python_version(),
        torch_version=torch.__version__,
        hbfp_version=__version__,
        host=socket.gethostname(),
    )


@functools.cache
def _code_provenance() -> Provenance:
    # Once per process: a worker starts many attempts, and its code does not change under it.
    return _provenance(PACKAGE)


def _git_state(where: Path) -> tuple[str | None, bool | None]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=where, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, dirty
