"""The ``hbfp-dse`` command."""

from __future__ import annotations

import typer

from .. import __version__
from .analyze import analyze
from .bench import bench
from .best import best
from .compare import compare_command
from .cost import cost
from .formats import formats
from .report import report
from .search import search
from .sweep import sweep
from .train import train

app = typer.Typer(
    name="hbfp-dse",
    help="Design-space exploration of HBFP and other narrow number formats for DNN training.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(formats)
app.command()(cost)
app.command()(train)
app.command()(bench)
app.command()(sweep)
app.command()(report)
app.command()(best)
app.command("compare")(compare_command)
app.command()(search)
app.command()(analyze)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hbfp-dse {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Design-space exploration of HBFP and other narrow number formats for DNN training."""


def main() -> None:
    app()
