"""Arithmetic density of a training run: its MACs priced by the format each one ran in.

density = Σ MACs × A(FP32) / Σ over (layer, GEMM, epoch) of MACs × A(format used there).
A schedule is one mapping per epoch from layer name to the layer's format; layers
it leaves out, and ``None`` or ``"fp32"``, run in FP32.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..formats import FloatFormat, Format, parse_format
from .areas import UnitAreas, default_areas
from .errors import CostError
from .gemms import GEMM_ROLES, LayerMACs
from .pe import pe_area

FP32 = FloatFormat("fp32")
FP32_KEY = "fp32"

FormatLike = Format | str | None


@dataclass(frozen=True)
class GemmFormats:
    """A layer's format per GEMM; a plain format in a schedule applies to all three."""

    forward: FormatLike = None
    dgrad: FormatLike = None
    wgrad: FormatLike = None


LayerFormat = FormatLike | GemmFormats
# One mapping per epoch, as ``emulation.Schedule.resolve`` returns.
EpochFormats = Sequence[Mapping[str, LayerFormat]]


@dataclass(frozen=True)
class LayerCost:
    """A layer's share of a run, per training sample, summed over its GEMMs and the epochs.

    ``area`` is Σ MACs × PE area (µm²·MAC, the silicon-time its work occupies); ``fp32_area``
    the same with every MAC in FP32. ``formats`` lists the formats its MACs ran in, in order of
    first use.
    """

    name: str
    module_type: str
    macs: int
    fp32_area: float
    area: float
    formats: tuple[str, ...]

    @property
    def density(self) -> float:
        return self.fp32_area / self.area


@dataclass(frozen=True)
class OperandBits:
    """Bits of the GEMM operands in one epoch's formats.

    ``weight_bits``: Σ weight elements × bits per element of the layer's forward format (the
    format the weights are read in). ``activation_bits``: per sample, Σ layer-input elements ×
    bits per element of the weight-gradient format (the stashed inputs the backward pass reads).
    """

    weight_bits: float
    activation_bits: float


@dataclass(frozen=True)
class RunCost:
    """The cost of a run. ``mac_share`` maps a mantissa width (``Format.mantissa_bits``, sign
    included) or ``"fp32"`` to its fraction of all MACs. ``operand_bits`` has one entry per epoch;
    ``fp32_operand_bits`` is the same model held in FP32."""

    epochs: int
    macs: int
    density_vs_fp32: float
    density_vs_bf16: float
    mac_share: Mapping[int | str, float]
    layers: tuple[LayerCost, ...]
    operand_bits: tuple[OperandBits, ...]
    fp32_operand_bits: OperandBits

    def mac_share_by_label(self) -> dict[str, float]:
        """``mac_share`` keyed for people: ``"4-bit"``, ``"6-bit"``, ..., ``"fp32"``."""
        return {mac_share_label(key): share for key, share in self.mac_share.items()}

    def mac_fraction(self, layer: LayerCost) -> float:
        """The share of the run's MACs that ``layer`` does."""
        return layer.macs / self.macs


def mac_share_label(key: int | str) -> str:
    """A ``mac_share`` key as a label: a mantissa width as ``"4-bit"``, FP32 as ``"fp32"``."""
    return FP32_KEY if key == FP32_KEY else f"{key}-bit"


def run_cost(
    layers: Sequence[LayerMACs], schedule: EpochFormats, areas: UnitAreas | None = None
) -> RunCost:
    """Density, MAC shares, per-layer breakdown and operand bits of ``schedule`` on ``layers``.

    ``layers`` come from ``count_macs``; each epoch processes the same samples, so per-sample
    MACs weigh the epochs correctly. Raises CostError (a ValueError) on an empty schedule or
    a layer name that is not among ``layers``.
    """
    areas = default_areas() if areas is None else areas
    if not schedule:
        raise CostError("a schedule needs at least one epoch")
    _check_names(layers, schedule)
    pe: dict[str, float] = {}

    def pe_of(fmt: Format) -> float:
        if fmt.name not in pe:
            pe[fmt.name] = pe_area(fmt, areas)
        return pe[fmt.name]

    macs_at: dict[int | str, int] = {}
    layer_macs = dict.fromkeys((layer.name for layer in layers), 0)
    layer_area = dict.fromkeys(layer_macs, 0.0)
    layer_formats: dict[str, dict[str, None]] = {name: {} for name in layer_macs}
    operand_bits = []
    for entry in schedule:
        weight_bits = activation_bits = 0.0
        for layer in layers:
            gemm = _resolve(entry.get(layer.name))
            for role, fmt in zip(GEMM_ROLES, gemm, strict=True):
                macs = layer.macs(role)
                if macs == 0:
                    continue
                key = FP32_KEY if fmt == FP32 else fmt.mantissa_bits
                macs_at[key] = macs_at.get(key, 0) + macs
                layer_macs[layer.name] += macs
                layer_area[layer.name] += macs * pe_of(fmt)
                layer_formats[layer.name][fmt.name] = None
            weight_bits += layer.weight_elements * gemm[0].bits_per_element
            activation_bits += layer.input_elements * gemm[2].bits_per_element
        operand_bits.append(OperandBits(weight_bits, activation_bits))

    total_macs = sum(layer_macs.values())
    total_area = sum(layer_area.values())
    fp32_area = pe_of(FP32)
    return RunCost(
        epochs=len(schedule),
        macs=total_macs,
        density_vs_fp32=total_macs * fp32_area / total_area,
        density_vs_bf16=total_macs * pe_of(parse_format("bf16")) / total_area,
        mac_share={key: macs_at[key] / total_macs for key in sorted(macs_at, key=_share_order)},
        layers=tuple(
            LayerCost(
                name=layer.name,
                module_type=layer.module_type,
                macs=layer_macs[layer.name],
                fp32_area=layer_macs[layer.name] * fp32_area,
                area=layer_area[layer.name],
                formats=tuple(layer_formats[layer.name]),
            )
            for layer in layers
        ),
        operand_bits=tuple(operand_bits),
        fp32_operand_bits=OperandBits(
            weight_bits=32.0 * sum(layer.weight_elements for layer in layers),
            activation_bits=32.0 * sum(layer.input_elements for layer in layers),
        ),
    )


def _resolve(entry: LayerFormat) -> tuple[Format, Format, Format]:
    if isinstance(entry, GemmFormats):
        return _format(entry.forward), _format(entry.dgrad), _format(entry.wgrad)
    fmt = _format(entry)
    return fmt, fmt, fmt


def _format(value: FormatLike) -> Format:
    return FP32 if value is None else parse_format(value)


def _check_names(layers: Sequence[LayerMACs], schedule: EpochFormats) -> None:
    known = {layer.name for layer in layers}
    for epoch, entry in enumerate(schedule, start=1):
        unknown = sorted(set(entry) - known)
        if unknown:
            raise CostError(
                f"schedule epoch {epoch}: no GEMM layer named {', '.join(map(repr, unknown))}; "
                f"the layers are {', '.join(layer.name for layer in layers)}"
            )


def _share_order(key: int | str) -> tuple[int, int]:
    # Mantissa widths ascending, FP32 last.
    return (1, 0) if key == FP32_KEY else (0, int(key))
