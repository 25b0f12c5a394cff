"""Target accuracies as users give them: a fraction (0.967), a percentage (96.7 or 96.7%).

They are read as decimals, so that 96.7 and 96.7% become exactly the fraction 0.967 does
(96.7 / 100 in binary is 0.9670000000000001, above a run that scored 0.967). A bare number
between 1 and 10 could be either (1.5: 1.5%, or a slip for 0.15?), so it is refused.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from ..errors import UserError

# A bare number above 1 reads as a percentage from here on; between 1 and this, it is refused.
PERCENT_FROM = Decimal(10)
HOW = "give a fraction (0.91), a percentage (91) or a percentage with its sign (91%)"


class TargetError(UserError):
    """A target accuracy that is no number, out of range or ambiguous."""

    def __init__(self, text: str, problem: str) -> None:
        super().__init__(f"target accuracy {text} {problem}: {HOW}")
        self.text = text
        self.problem = problem


def parse_target(given: str | float) -> float:
    """A target accuracy as the fraction it stands for: 0.967, 96.7 and 96.7% are one."""
    text = str(given).strip()
    percent = text.endswith("%")
    try:
        value = Decimal(text.removesuffix("%").strip())
    except InvalidOperation:
        raise TargetError(repr(text), "is not a number") from None
    if not value.is_finite():
        raise TargetError(text, "is not a finite number")
    if value <= 0:
        raise TargetError(text, "must be above 0")
    if percent or value > 1:
        if value > 100:
            raise TargetError(text, "is above 100%")
        if not percent and value < PERCENT_FROM:
            raise TargetError(text, "is ambiguous (a fraction above 1, or a small percentage)")
        value /= 100
    return float(value)
