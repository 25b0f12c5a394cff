"""Per-layer sensitivity without a training run: quantize one layer at a time in each format
(the rest FP32) on a few batches of a trained model, and measure what that one layer costs.

For each layer and format, against the model in FP32 on the same batches:

- ``loss_increase``: the mean training loss minus the FP32 one;
- ``gradient_error``: ||g - g_fp32|| / ||g_fp32|| over all parameters' gradients (summed
  over the batches);
- the layer's operand statistics (``emulation.statistics``).

The model runs as in training (BatchNorm on the batch's statistics), each measurement from
one seed, so that dropout, where a model has any, drops alike: FP32 gives the same loss every
time, and a layer's loss increase is its quantization alone. Layers are ranked by their
loss increase in the narrowest format; the proposal boosts the fewest layers that together
account for ``share`` of the summed loss increase there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..emulation import OperandStatistics, Probe, apply_formats, attach_probe
from ..errors import UserError
from ..formats import Format, parse_format
from ..formats.quantizer import eager_only
from ..training.config import TrainConfig
from ..training.devices import exact_float32
from ..training.trainer import TrainingState, model_input, trained_state
from .search.proposal import DEFAULT_SHARE


@dataclass(frozen=True)
class LayerSensitivity:
    layer: str
    format: str
    loss_increase: float
    gradient_error: float
    statistics: list[OperandStatistics]


@dataclass
class Sensitivity:
    """What :func:`analyze` found, and the schedule it proposes."""

    fp32_loss: float
    batches: int
    formats: list[str]  # narrowest first
    layers: list[str]  # in module order
    results: list[LayerSensitivity]
    share: float
    boosted: list[str] = field(default_factory=list)

    @property
    def narrow(self) -> str:
        return self.formats[0]

    @property
    def wide(self) -> str:
        return self.formats[-1]

    def result(self, layer: str, fmt: str) -> LayerSensitivity:
        return next(r for r in self.results if r.layer == layer and r.format == fmt)

    def ranking(self) -> list[str]:
        """Layers from the most sensitive in the narrowest format to the least."""
        return sorted(
            self.layers,
            key=lambda name: (
                -self.result(name, self.narrow).loss_increase,
                -self.result(name, self.narrow).gradient_error,
            ),
        )

    def proposal(self) -> dict[str, Any]:
        """A sweep file's ``baselines`` entry: the narrowest format everywhere, the boosted
        layers in the widest."""
        rules: list[dict[str, Any]] = [{"format": self.narrow}]
        if self.boosted and self.wide != self.narrow:
            rules.append({"format": self.wide, "layers": list(self.boosted)})
        return {"label": "analysis", "schedule": {"rules": rules}}


def analyze(
    config: TrainConfig,
    formats: Sequence[str],
    *,
    weights: Path | None = None,
    batches: int = 4,
    share: float = DEFAULT_SHARE,
    progress: Callable[[str], None] | None = None,
) -> Sensitivity:
    """The sensitivity of every quantized layer of ``config``'s model in each of ``formats``:
    on the model trained by ``config`` (FP32, its epochs), or with ``weights`` from a
    checkpoint, on the first ``batches`` training batches."""
    if not formats:
        raise UserError("give at least one format to analyze")
    if not 0 < share <= 1:
        raise UserError(f"share {share} must be in (0, 1]")
    ordered = sorted(dict.fromkeys(parse_format(f) for f in formats), key=_width)
    fp32 = TrainConfig.model_validate(
        {**config.model_dump(), "schedule": {"format": "fp32"}, "analysis": None}
    )
    state = trained_state(fp32, weights=weights)
    probe = Probe(seed=config.seed)
    attach_probe(state.model, probe)
    with exact_float32(), eager_only():  # a few calls per shape: compiling would not pay
        inputs = _batches(state, batches)
        reference = [_loss_and_gradient(state, x, y) for x, y in inputs]
        fp32_loss = sum(loss for loss, _ in reference) / len(reference)
        names = [layer.name for layer in state.layers]
        results = []
        for fmt in ordered:
            for name in names:
                if progress is not None:
                    progress(f"{name} in {fmt.name}")
                results.append(_one_layer(state, probe, name, fmt, inputs, reference))
    apply_formats(state.model, {}, state.quantization)
    attach_probe(state.model, None)
    found = Sensitivity(fp32_loss, len(inputs), [f.name for f in ordered], names, results, share)
    found.boosted = _boosted(found)
    return found


def _width(fmt: Format) -> tuple[float, int]:
    return (fmt.bits_per_element, fmt.mantissa_bits)


def _batches(state: TrainingState, count: int) -> list[tuple[Tensor, Tensor]]:
    if count < 1:
        raise UserError(f"--batches must be at least 1, got {count}")
    batches = state.data.train_batches(state.config.batch_size, seed=state.seed, augment=False)
    batches.set_epoch(0)
    taken = []
    for images, labels in batches:
        taken.append((images, labels))
        if len(taken) == count:
            break
    return taken


def _loss_and_gradient(
    state: TrainingState, images: Tensor, labels: Tensor
) -> tuple[float, Tensor]:
    model: nn.Module = state.model
    model.train()  # BatchNorm normalises by the batch, as in training
    torch.manual_seed(state.seed)  # the same dropout, if any, in every measurement
    model.zero_grad(set_to_none=True)
    logits = model(model_input(state, images))
    if logits.dim() == 3:  # a language model: one prediction per token
        logits, labels = logits.flatten(0, 1), labels.flatten()
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    gradient = torch.cat(
        [p.grad.reshape(-1) for p in model.parameters() if p.grad is not None]
    ).double()
    model.zero_grad(set_to_none=True)
    return float(loss.detach()), gradient


def _one_layer(
    state: TrainingState,
    probe: Probe,
    name: str,
    fmt: Format,
    inputs: Sequence[tuple[Tensor, Tensor]],
    reference: Sequence[tuple[float, Tensor]],
) -> LayerSensitivity:
    apply_formats(state.model, {name: fmt}, state.quantization)
    increase = error = energy = 0.0
    probe.enabled = True
    for (images, labels), (ref_loss, ref_grad) in zip(inputs, reference, strict=True):
        loss, gradient = _loss_and_gradient(state, images, labels)
        increase += loss - ref_loss
        error += float((gradient - ref_grad).square().sum())
        energy += float(ref_grad.square().sum())
    probe.enabled = False
    return LayerSensitivity(
        name,
        fmt.name,
        increase / len(inputs),
        math.sqrt(error / energy) if energy > 0 else 0.0,
        [s for s in probe.take() if s.layer == name],
    )


def _boosted(found: Sensitivity) -> list[str]:
    """The fewest layers whose loss increases in the narrowest format add up to ``share`` of
    the positive total, in module order."""
    increases = {name: found.result(name, found.narrow).loss_increase for name in found.layers}
    total = sum(v for v in increases.values() if v > 0)
    picked: list[str] = []
    gathered = 0.0
    for name in found.ranking():
        if total <= 0 or increases[name] <= 0 or gathered >= found.share * total:
            break
        picked.append(name)
        gathered += increases[name]
    return [name for name in found.layers if name in picked]
