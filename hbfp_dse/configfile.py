"""Reading YAML configuration files into validated pydantic models, with errors that name
the file, the line or the key, and the problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import UserError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """The base of every configuration model: an unknown key is an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read: {err.strerror}") from None
    return parse_yaml(text, str(path))


def parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise UserError(f"{source}: nested too deeply to be a configuration") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise UserError(f"{where}: YAML syntax error: {err.problem or err}") from None
    except yaml.YAMLError as err:
        raise UserError(f"{source}: YAML error: {err}") from None


def validate(model: type[M], data: Any, source: str) -> M:
    """Validate ``data`` against ``model``; the error names every bad key by its path."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a mapping of keys, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except RecursionError:
        raise UserError(f"{source}: nested too deeply to be a configuration") from None
    except ValidationError as err:
        raise UserError(f"{source}: invalid configuration:\n{describe(err)}") from None
    except UserError as err:  # raised by nested validators that parse names
        raise UserError(f"{source}: {err}") from None


def describe(err: ValidationError) -> str:
    lines = []
    for problem in err.errors():
        where = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        message = problem["msg"]
        if problem["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)
