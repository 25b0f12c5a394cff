"""Ctrl-C and SIGTERM during long commands: workers mark their runs interrupted, the command
says how to resume and exits with 130."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import typer

from .common import err_console


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def resumable(how_to_resume: str) -> Iterator[None]:
    """SIGTERM (a scheduler's stop) counts as Ctrl-C; either ends the command with 130."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    except KeyboardInterrupt:
        err_console.print(f"[yellow]interrupted:[/] {how_to_resume}")
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
