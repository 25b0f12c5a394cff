"""The cost model's error for bad user input (a table, a schedule, a model and shape)."""

from ..errors import UserError


class CostError(UserError):
    """Input the cost model cannot use; the message names the file, layer or shape."""


class AreaTableError(CostError):
    """An area table that cannot be read or used; the message names the file and line."""
