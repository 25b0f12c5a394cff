"""Target accuracies: a fraction, a percentage and a percentage with its sign are one exact
value; anything else is refused with how to write it."""

from __future__ import annotations

import pytest

from hbfp_dse.experiments.target import TargetError, parse_target


@pytest.mark.parametrize("text", ["0.967", "96.7", "96.7%", " 96.7 % ", ".967"])
def test_every_way_of_writing_a_target_is_the_same_float(text: str) -> None:
    assert parse_target(text) == 0.967 == 967 / 1000  # not 96.7 / 100 = 0.9670000000000001


@pytest.mark.parametrize(
    ("text", "expected"), [("1", 1.0), ("100", 1.0), ("10", 0.1), ("1.5%", 0.015), ("0.5", 0.5)]
)
def test_the_edges(text: str, expected: float) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("1.5", "is ambiguous"),
        ("9.99", "is ambiguous"),
        ("0", "must be above 0"),
        ("-3", "must be above 0"),
        ("101", "is above 100%"),
        ("100.5%", "is above 100%"),
        ("nan", "is not a finite number"),
        ("ninety", "is not a number"),
        ("%", "is not a number"),
    ],
)
def test_a_bad_target_says_how_to_write_one(text: str, problem: str) -> None:
    with pytest.raises(TargetError) as err:
        parse_target(text)
    assert problem in str(err.value)
    assert "give a fraction (0.91), a percentage (91) or a percentage with its sign (91%)" in str(
        err.value
    )
