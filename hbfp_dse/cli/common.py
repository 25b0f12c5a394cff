"""Pieces every command shares: consoles, JSON output, user-error handling."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from ..errors import UserError
from ..experiments.store import (
    ForeignDatabaseError,
    NewerDatabaseError,
    NoDatabaseError,
    NoResultsError,
    SchemaVersionError,
    StoreUnavailableError,
)

console = Console()
err_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


# What to do about a store error, in the command line's terms.
_STORE_HINTS: dict[type[UserError], str] = {
    NoDatabaseError: "run 'hbfp-dse sweep FILE' first or point --db / HBFP_DSE_DB at one",
    NoResultsError: "run 'hbfp-dse sweep FILE' first or point --db / HBFP_DSE_DB at one",
    ForeignDatabaseError: "point --db at another database",
    SchemaVersionError: "a new --db starts an empty store",
    NewerDatabaseError: "a new --db starts an empty store",
    StoreUnavailableError: "run the same command again once it is back: what was recorded is "
    "kept, and runs resume from their checkpoints",
}


def user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Report bad input as one line on stderr with exit code 2, never a traceback; a store
    error gets a hint naming the flags. A database that stayed away is no bad input: exit 1."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except UserError as err:
            hint = next((h for t, h in _STORE_HINTS.items() if isinstance(err, t)), None)
            message = f"{err}; {hint}" if hint else str(err)
            # soft_wrap: no hard line breaks inside paths or words at 80 columns (pipes, logs).
            # The message is plain text: a path like runs[a].yaml is not rich markup.
            err_console.print(
                f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(1 if isinstance(err, StoreUnavailableError) else 2) from None

    return wrapper


def exit_on_outage(reason: str | None) -> None:
    """A worker process gave up on the database: say so once, exit 1."""
    if reason is not None:
        hint = _STORE_HINTS[StoreUnavailableError]
        err_console.print(
            f"[bold red]error:[/] {escape(reason)}; {hint}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(1)


def print_table(table: Table) -> None:
    """A table on stdout: in a terminal, folded to its width; in a pipe or a log, whole lines
    however wide."""
    if console.is_terminal:
        console.print(table)
        return
    needed = Measurement.get(console, console.options.update_width(10_000), table).maximum
    Console(width=max(console.width, needed)).print(table)


def print_json(data: Any) -> None:
    """Plain JSON on stdout (no rich markup) so that other programs can parse it: infinite
    values (an SQNR without error) are written as null, which JSON has, not Infinity."""
    typer.echo(json.dumps(_finite(data), indent=2, allow_nan=False))


def _finite(data: Any) -> Any:
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {key: _finite(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(value) for value in data]
    return data
