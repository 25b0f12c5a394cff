"""A sensitivity analysis's proposal (``hbfp-dse analyze``), read back for a search to try
first: the YAML of ``--proposal`` or the JSON of ``--format json``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...configfile import read_yaml
from ...errors import UserError
from ...formats import FormatError, HBFPFormat, parse_format

# A proposal boosts the fewest layers that account for this share of the loss increase.
DEFAULT_SHARE = 0.5


@dataclass(frozen=True)
class Proposal:
    """``narrow`` everywhere, ``wide`` on the ``boosted`` layers."""

    narrow: HBFPFormat
    wide: HBFPFormat
    boosted: tuple[str, ...]

    def check_layers(self, names: Sequence[str]) -> None:
        """A proposal for another model would silently boost nothing."""
        unknown = [name for name in self.boosted if name not in names]
        if unknown:
            raise UserError(
                f"--from-analysis: the model has no layer {', '.join(map(repr, unknown))} (its "
                f"layers: {', '.join(names[:8])}{', ...' if len(names) > 8 else ''}); was the "
                "analysis of another model?"
            )


def read_proposal(path: Path) -> Proposal:
    data = read_yaml(path)
    rules = _rules(data)
    if rules is None:
        raise UserError(
            f"{path}: not an analysis proposal; give the file of 'hbfp-dse analyze --proposal' "
            "or its '--format json' output"
        )
    first, *rest = rules
    if not isinstance(first, dict) or first.get("layers") or len(rest) > 1:
        raise UserError(f"{path}: a proposal has a format for every layer, then at most one rule")
    narrow = _hbfp(path, first.get("format"))
    if not rest:
        return Proposal(narrow, narrow, ())
    boost = rest[0]
    layers = boost.get("layers") if isinstance(boost, dict) else None
    if not isinstance(layers, list) or not all(isinstance(n, str) for n in layers):
        raise UserError(f"{path}: the boosting rule needs 'layers', a list of layer names")
    return Proposal(narrow, _hbfp(path, boost.get("format")), tuple(layers))


def _rules(data: Any) -> list[Any] | None:
    try:
        entry = data["proposal"] if "proposal" in data else data["baselines"][0]
        rules = entry["schedule"]["rules"]
    except (KeyError, IndexError, TypeError):
        return None
    return rules if isinstance(rules, list) and rules else None


def _hbfp(path: Path, name: Any) -> HBFPFormat:
    try:
        fmt = parse_format(str(name))
    except FormatError as err:
        raise UserError(f"{path}: {err}") from None
    if not isinstance(fmt, HBFPFormat):
        raise UserError(f"{path}: a search space holds HBFP formats, and {fmt.name} is none")
    return fmt
