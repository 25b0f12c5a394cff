"""Stable colours: a configuration label has the same colour in every plot, so that a reader
who learnt one figure reads the next (fixed for the common baselines, a hash for the rest)."""

from __future__ import annotations

import hashlib

# The baselines most sweeps have; a family (mxfp4_e2m1, fp8_e5m2) shares its colour.
BASELINE_COLOURS = {
    "fp32": "#333333",
    "bf16": "#8c564b",
    "hbfp8": "#1f77b4",
    "hbfp6": "#2ca02c",
    "hbfp4": "#d62728",
    "booster": "#9467bd",
}
FAMILY_COLOURS = {"mxfp": "#ff7f0e", "fp8": "#e377c2"}
# Grid and search points are many: on the front they are coloured by kind.
KIND_COLOURS = {"grid": "#17becf", "search": "#bcbd22", "baseline": "#7f7f7f"}
# The other labels, by hash: dark and mid tones apart from the fixed ones (tab20b/c).
PALETTE = (
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
    "#3182bd",
    "#e6550d",
    "#31a354",
    "#756bb1",
    "#636363",
    "#5254a3",
    "#8ca252",
    "#bd9e39",
    "#ad494a",
    "#a55194",
    "#6baed6",
)
# Curves of hashed labels also differ in dashes, so that two of one colour stay apart.
LINESTYLES = ("-", "--", "-.", ":")


def colour(label: str) -> str:
    """The colour of configuration ``label`` in every plot."""
    if label in BASELINE_COLOURS:
        return BASELINE_COLOURS[label]
    family = next((c for prefix, c in FAMILY_COLOURS.items() if label.startswith(prefix)), None)
    return family or PALETTE[_hash(label) % len(PALETTE)]


def linestyle(label: str) -> str:
    """Solid for the fixed colours; for hashed ones, dashes from a second part of the hash."""
    if label in BASELINE_COLOURS or any(label.startswith(p) for p in FAMILY_COLOURS):
        return "-"
    return LINESTYLES[_hash(label) // len(PALETTE) % len(LINESTYLES)]


def _hash(label: str) -> int:
    # Not hash(): Python salts it per process, and the colours must not change between runs.
    return int.from_bytes(hashlib.sha256(label.encode()).digest()[:4], "big")
