"""Schedules: which format each quantized layer uses in each epoch.

A schedule is an ordered list of rules; each rule picks layers and epochs and gives
them a format, and later rules win. Layers no rule picks stay FP32.

Layer selectors: ``"first"``, ``"last"``, an index into the quantized layers in module
order (negative counts from the end), ``"type:<kind>"`` (``conv``, ``linear`` or a class
name such as ``Conv2d``) or a glob on the module name (``"layer3.*"``).
Epoch selectors (0-based): an index (negative counts from the end) or a half-open
range ``"start:stop"`` whose ends may be negative or empty (``"-5:"``: the last five).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import UserError
from ..formats import FloatFormat, Format, parse_format

LayerSelector = str | int
EpochSelector = str | int

FP32 = FloatFormat("fp32")


def final_epochs(count: int) -> EpochSelector:
    """The selector of a run's last ``count`` epochs."""
    if count < 1:
        raise UserError(f"a selector of the final epochs needs a count >= 1, got {count}")
    return f"-{count}:"


@dataclass(frozen=True)
class Rule:
    format: Format
    layers: tuple[LayerSelector, ...] | None = None  # None: every quantized layer
    epochs: tuple[EpochSelector, ...] | None = None  # None: every epoch

    def __post_init__(self) -> None:
        object.__setattr__(self, "format", parse_format(self.format))
        for selector in self.epochs or ():
            _parse_epoch(selector)  # syntax check now, bounds once epochs are known
        for selector in self.layers or ():
            if isinstance(selector, str) and selector.startswith("type:") and not selector[5:]:
                raise UserError("layer selector 'type:' needs a kind, e.g. 'type:conv'")


@dataclass(frozen=True)
class LayerInfo:
    name: str
    kind: str  # class name of the original layer, e.g. "Conv2d"


@dataclass(frozen=True)
class Schedule:
    rules: tuple[Rule, ...] = field(default_factory=tuple)

    @classmethod
    def uniform(cls, fmt: Format | str) -> Schedule:
        return cls((Rule(parse_format(fmt)),))

    @classmethod
    def booster(
        cls, low: Format | str = "hbfp4", high: Format | str = "hbfp6", last_epochs: int = 1
    ) -> Schedule:
        """Accuracy Booster: ``low`` everywhere, ``high`` in the first and last quantized
        layers and, everywhere, in the last ``last_epochs`` epochs."""
        if last_epochs < 0:
            raise UserError(f"booster last_epochs must be >= 0, got {last_epochs}")
        rules = [Rule(parse_format(low)), Rule(parse_format(high), layers=("first", "last"))]
        if last_epochs:
            rules.append(Rule(parse_format(high), epochs=(final_epochs(last_epochs),)))
        return cls(tuple(rules))

    def resolve(self, layers: Sequence[LayerInfo], epochs: int) -> list[dict[str, Format]]:
        """The format of every layer in every epoch: one ``{layer name: format}`` per epoch."""
        if epochs < 1:
            raise UserError(f"a schedule needs at least one epoch, got {epochs}")
        table = [dict.fromkeys((layer.name for layer in layers), FP32) for _ in range(epochs)]
        for rule in self.rules:
            picked = _select_layers(rule.layers, layers)
            for epoch in _select_epochs(rule.epochs, epochs):
                for name in picked:
                    table[epoch][name] = rule.format
        return table


def _select_layers(
    selectors: tuple[LayerSelector, ...] | None, layers: Sequence[LayerInfo]
) -> list[str]:
    if selectors is None:
        return [layer.name for layer in layers]
    picked: dict[str, None] = {}
    for selector in selectors:
        matches = _match_layer(selector, layers)
        if not matches:
            raise UserError(
                f"layer selector {selector!r} matches none of the {len(layers)} quantized "
                f"layers ({', '.join(layer.name for layer in layers[:6])}"
                f"{', ...' if len(layers) > 6 else ''})"
            )
        picked.update(dict.fromkeys(matches))
    return list(picked)


def _match_layer(selector: LayerSelector, layers: Sequence[LayerInfo]) -> list[str]:
    names = [layer.name for layer in layers]
    if isinstance(selector, int) or (isinstance(selector, str) and _is_int(selector)):
        index = int(selector)
        return [names[index]] if -len(names) <= index < len(names) else []
    if selector == "first":
        return names[:1]
    if selector == "last":
        return names[-1:]
    if selector.startswith("type:"):
        kind = selector[5:].lower()
        return [
            layer.name
            for layer in layers
            if layer.kind.lower() == kind or layer.kind.lower().startswith(kind)
        ]
    return [name for name in names if fnmatch.fnmatchcase(name, selector)]


def _select_epochs(selectors: tuple[EpochSelector, ...] | None, epochs: int) -> list[int]:
    if selectors is None:
        return list(range(epochs))
    picked: dict[int, None] = {}
    for selector in selectors:
        picked.update(dict.fromkeys(_epoch_range(selector, epochs)))
    return list(picked)


def _parse_epoch(selector: EpochSelector) -> int | slice:
    text = str(selector).strip()
    try:
        if ":" in text:
            start, stop = (int(part) if part.strip() else None for part in text.split(":", 1))
            return slice(start, stop)
        return int(text)
    except ValueError:
        raise UserError(
            f"epoch selector {selector!r} is not an index or a 'start:stop' range"
        ) from None


def _epoch_range(selector: EpochSelector, epochs: int) -> range:
    parsed = _parse_epoch(selector)
    if isinstance(parsed, slice):
        return range(epochs)[parsed]
    index = parsed
    if not -epochs <= index < epochs:
        raise UserError(f"epoch {index} is out of range for a run of {epochs} epochs")
    return range(epochs)[index : index + 1 or None]


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()
