"""Points of a search space: the layer groups of a model, the trial parameters and their
choices, the configuration a set of parameters stands for, and the anchors tried first.

Each choice is one categorical parameter, named ``mantissa_bits[<group>]``,
``block_size[<group>]``, ``boost_last_epochs``, ``sub_block`` (``None``: one scaling level)
and ``rounding``.
"""

from __future__ import annotations

import fnmatch
import math
import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from ...emulation import LayerInfo
from ...errors import UserError
from ...formats import HBFPFormat, parse_format
from ...training.config import BoosterConfig, ScheduleConfig, TrainConfig
from ..space import LayerFormat, Point, hbfp_name, point_config
from .section import Choices, SearchSpace

ParamValue = int | str | None
Params = dict[str, ParamValue]


@dataclass(frozen=True)
class LayerGroup:
    """Layers that share one format per trial; ``label`` names its parameters."""

    label: str
    selectors: tuple[str, ...]  # schedule layer selectors
    choices: Choices

    @property
    def mantissa_param(self) -> str:
        return f"mantissa_bits[{self.label}]"

    @property
    def block_param(self) -> str:
        return f"block_size[{self.label}]"


def layer_groups(space: SearchSpace, layer_names: Sequence[str]) -> list[LayerGroup]:
    """The groups in rule order: middle groups, then first, then last (later rules win, so the
    first and last layers take their own formats even where a middle glob matches them)."""
    if not layer_names:
        raise UserError("the model has no quantized layers to search over")
    middle = list(layer_names[1:-1])
    globs = _auto_globs(middle) if space.middle.groups == "auto" else space.middle.groups
    _check_cover(globs, middle)
    groups = [LayerGroup(glob, (glob,), space.middle) for glob in globs]
    return [
        *groups,
        LayerGroup("first", ("first",), space.first),
        LayerGroup("last", ("last",), space.last),
    ]


def _auto_globs(names: Sequence[str]) -> list[str]:
    # A quantized layer has no quantized children, so a dotted prefix never names a layer.
    prefixes = dict.fromkeys(name.split(".")[0] for name in names)
    return [p if p in names else f"{p}.*" for p in prefixes]


def _listing(names: Sequence[str]) -> str:
    return f"{', '.join(names[:6])}{', ...' if len(names) > 6 else ''}"


def _check_cover(globs: Sequence[str], middle: Sequence[str]) -> None:
    for glob in globs:
        if not any(fnmatch.fnmatchcase(name, glob) for name in middle):
            raise UserError(
                f"search.middle.groups: {glob!r} matches none of the middle layers "
                f"({_listing(middle)})"
            )
    missed = [n for n in middle if not any(fnmatch.fnmatchcase(n, g) for g in globs)]
    if missed:
        raise UserError(
            f"search.middle.groups leave layers without a group: {_listing(missed)}; "
            "add a glob such as '*'"
        )


def param_choices(space: SearchSpace, groups: Sequence[LayerGroup]) -> dict[str, list[ParamValue]]:
    """Every trial parameter and its choices; the search and a grid over it share these."""
    choices: dict[str, list[ParamValue]] = {}
    for group in groups:
        choices[group.mantissa_param] = list(group.choices.mantissa_bits)
        choices[group.block_param] = list(group.choices.block_size)
    choices["boost_last_epochs"] = list(space.boost_last_epochs)
    choices["sub_block"] = list(space.sub_blocks)
    choices["rounding"] = [r.label for r in space.rounding]
    return choices


def space_size(choices: dict[str, list[ParamValue]]) -> int:
    return math.prod(len(values) for values in choices.values())


def params_point(params: Params, space: SearchSpace, groups: Sequence[LayerGroup]) -> Point:
    """The point that trial parameters stand for. Boosted epochs raise a group to
    ``boost_format`` only where that is wider than the group's own mantissa."""
    boost_bits = parse_format(space.boost_format).mantissa_bits
    sub_block = params["sub_block"]
    if sub_block is not None and not isinstance(sub_block, int):
        raise TypeError(f"parameter sub_block must be an integer or None, got {sub_block!r}")
    rules: list[LayerFormat] = []
    for group in groups:
        mantissa = _int(params, group.mantissa_param)
        fmt = hbfp_name(mantissa, _int(params, group.block_param), sub_block)
        rules.append(LayerFormat(fmt, group.selectors))
        if mantissa < boost_bits:
            rules.append(LayerFormat(space.boost_format, group.selectors, boosted=True))
    rounding = space.rounding_named(str(params["rounding"]))
    return Point(tuple(rules), _int(params, "boost_last_epochs"), rounding)


def canonical_config(config: TrainConfig, layers: Sequence[LayerInfo]) -> TrainConfig:
    """``config`` with its schedule written as a baseline writes the same schedule, where it
    is one: a uniform format, or Accuracy Booster. Equal schedules then have one identity, so
    a trial equal to a baseline (or to a grid point written so) reuses its stored runs.
    Decided on the resolved table of formats, so only exact equals are rewritten."""
    table = config.schedule.build().resolve(layers, config.epochs)
    formats = {fmt.name for epoch in table for fmt in epoch.values()}
    candidates = []
    if len(formats) == 1:
        candidates.append(ScheduleConfig(format=formats.pop()))
    elif len(layers) > 2:
        low, high = table[0][layers[1].name].name, table[0][layers[0].name].name
        boosted = 0
        while boosted < len(table) and {f.name for f in table[-1 - boosted].values()} == {high}:
            boosted += 1
        candidates.append(
            ScheduleConfig(booster=BoosterConfig(low=low, high=high, last_epochs=boosted))
        )
    for schedule in candidates:
        if schedule.build().resolve(layers, config.epochs) == table:
            return config.model_copy(update={"schedule": schedule})
    return config


def config_from_params(
    params: Params, space: SearchSpace, groups: Sequence[LayerGroup], base: TrainConfig
) -> TrainConfig:
    """The training configuration of one point of the space."""
    return point_config(params_point(params, space, groups), base)


def _int(params: Params, name: str) -> int:
    value = params[name]
    if not isinstance(value, int):
        raise TypeError(f"parameter {name} must be an integer, got {value!r}")
    return value


# Anchors: (mantissa of the first layer, of the middle groups, of the last layer, boosted epochs).
ANCHORS: dict[str, tuple[int, int, int, int]] = {
    "hbfp8": (8, 8, 8, 0),
    "hbfp6": (6, 6, 6, 0),
    "booster": (6, 4, 6, 1),
}


def anchor_params(space: SearchSpace, groups: Sequence[LayerGroup]) -> dict[str, Params]:
    """The known-good points, as trial parameters. An anchor is defined by its mantissa widths:
    where a group cannot take its width the anchor is skipped with a warning. Its other settings
    take the nearest choice: block size nearest 64 (in log2), boosted epochs nearest the
    anchor's, one scaling level or else the largest sub-block, nearest rounding or else the
    first choice."""
    choices = param_choices(space, groups)
    anchors = {}
    for name, (first, middle, last, boost) in ANCHORS.items():
        widths = {g.label: {"first": first, "last": last}.get(g.label, middle) for g in groups}
        missing = [g.label for g in groups if widths[g.label] not in g.choices.mantissa_bits]
        if missing:
            warnings.warn(
                f"search anchor {name!r} skipped: no mantissa width "
                f"{', '.join(f'{widths[g]} for {g}' for g in missing)} in the space",
                stacklevel=2,
            )
            continue
        params: Params = {}
        for group in groups:
            params[group.mantissa_param] = widths[group.label]
            params[group.block_param] = min(
                group.choices.block_size, key=lambda b: abs(math.log2(b / 64))
            )
        anchors[name] = {**params, **_shared_settings(space, choices, boost)}
    return anchors


def _shared_settings(
    space: SearchSpace, choices: dict[str, list[ParamValue]], boost: int
) -> Params:
    """An anchor's settings beside its widths: boosted epochs nearest ``boost``, one scaling
    level or else the largest sub-block, nearest rounding or else the first choice."""
    return {
        "boost_last_epochs": min(space.boost_last_epochs, key=lambda n: abs(n - boost)),
        "sub_block": max(choices["sub_block"], key=lambda s: math.inf if s is None else s),
        "rounding": "nearest" if "nearest" in choices["rounding"] else choices["rounding"][0],
    }


def proposal_params(
    space: SearchSpace,
    groups: Sequence[LayerGroup],
    layer_names: Sequence[str],
    narrow: HBFPFormat,
    wide: HBFPFormat,
    boosted: Collection[str],
) -> Params:
    """An analysis's proposal (``narrow`` everywhere, ``wide`` on the ``boosted`` layers) as
    the nearest point of the space: a group with a boosted layer takes the mantissa width and
    block size nearest ``wide``'s, the others ``narrow``'s (ties: the wider width); no boosted
    epochs where the space allows, the rest as for anchors."""
    owners = _owners(groups, layer_names)
    widened = {owners[name] for name in boosted if name in owners}
    params: Params = {}
    for group in groups:
        fmt = wide if group.label in widened else narrow
        params[group.mantissa_param] = min(
            group.choices.mantissa_bits, key=lambda m: (abs(m - fmt.mantissa_bits), -m)
        )
        params[group.block_param] = min(
            group.choices.block_size, key=lambda b: abs(math.log2(b / fmt.block_size))
        )
    return {**params, **_shared_settings(space, param_choices(space, groups), 0)}


def _owners(groups: Sequence[LayerGroup], names: Sequence[str]) -> dict[str, str]:
    """Each layer's group: the last whose rule selects it, as later rules win."""
    owners: dict[str, str] = {}
    for name in names:
        for group in groups:
            if group.label == "first":
                selected = name == names[0]
            elif group.label == "last":
                selected = name == names[-1]
            else:
                selected = any(fnmatch.fnmatchcase(name, glob) for glob in group.selectors)
            if selected:
                owners[name] = group.label
    return owners
