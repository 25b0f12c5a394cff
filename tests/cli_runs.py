"""The ``hbfp-dse`` app run in process, as the CLI tests run it."""

from __future__ import annotations

from typer.testing import CliRunner, Result

from hbfp_dse.cli.app import app


def invoke(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def ok(*args: object) -> Result:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result


def user_error(result: Result, fragment: str) -> None:
    """One clear message naming the problem: exit 2, no traceback."""
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ")
    assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.output
