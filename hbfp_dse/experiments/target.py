"""Target accuracies as users give them: a fraction (0.91) or a percentage (91)."""

from __future__ import annotations

from ..errors import UserError


class TargetError(UserError):
    """A target accuracy outside (0, 100]."""

    reason = "is outside (0, 100]: give 0.91 or 91"

    def __init__(self, value: float) -> None:
        super().__init__(f"target accuracy {value:g} {self.reason}")
        self.value = value


def parse_target(value: float) -> float:
    """A target accuracy as a fraction: 0.9 and 90 both mean 90%."""
    if not 0 < value <= 100:
        raise TargetError(value)
    return value / 100 if value > 1 else value
