"""Worker identities, and whether a worker's process is provably gone.

A worker is named ``host:pid:space:nonce``. ``space`` stands for this machine's boot and PID
namespace, so that a worker in another container with the same host name is never judged by
this process table; ``nonce`` is random, so that a recycled PID never passes for the worker
that had it before.
"""

from __future__ import annotations

import functools
import hashlib
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

UNKNOWN_SPACE = "-"  # no /proc: such workers are judged by their heartbeats alone


@functools.cache
def process_space() -> str:
    """A short name for this boot of this machine and the PID namespace of this process."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return UNKNOWN_SPACE
    return hashlib.sha256(f"{boot}/{namespace}".encode()).hexdigest()[:8]


def worker_name() -> str:
    """A new worker identity, never given out before."""
    return f"{socket.gethostname()}:{os.getpid()}:{process_space()}:{secrets.token_hex(4)}"


@dataclass(frozen=True)
class WorkerIdentity:
    host: str
    pid: int
    space: str
    nonce: str

    @classmethod
    def parse(cls, name: str) -> WorkerIdentity | None:
        """None for names of another form (older releases wrote ``host:pid``)."""
        parts = name.rsplit(":", 3)
        if len(parts) != 4 or not parts[1].isdigit():
            return None
        host, pid, space, nonce = parts
        return cls(host, int(pid), space, nonce)


def host_prefix() -> str:
    """What every identity made on this host starts with."""
    return f"{socket.gethostname()}:"


def known_dead(worker: str) -> bool:
    """True only when the worker ran in this very process space and its process is gone; a
    worker elsewhere, or of unknown form, is left to its heartbeat."""
    identity = WorkerIdentity.parse(worker)
    if identity is None or identity.space == UNKNOWN_SPACE:
        return False
    if (identity.host, identity.space) != (socket.gethostname(), process_space()):
        return False
    try:
        os.kill(identity.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
