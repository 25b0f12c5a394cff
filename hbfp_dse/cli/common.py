"""Pieces every command shares: consoles, output formats, user-error handling."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from enum import StrEnum
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import UserError

console = Console()
err_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


def user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Report bad input as one line on stderr with exit code 2, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except UserError as err:
            # soft_wrap: no hard line breaks inside paths or words at 80 columns (pipes, logs).
            # The message is plain text: a path like runs[a].yaml is not rich markup.
            err_console.print(
                f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(2) from None

    return wrapper


def print_json(data: Any) -> None:
    """Plain JSON on stdout (no rich markup) so that other programs can parse it."""
    typer.echo(json.dumps(data, indent=2))
