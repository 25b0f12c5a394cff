"""Point labels that neither overlap each other nor leave the axes: each label tries offsets
around its point, nearest first, measures where its rendered text lands, and takes the
nearest that clears the axes' edges and the labels already placed, preferring one that
covers no marker and crosses no line."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backend_bases import RendererBase
from matplotlib.text import Annotation, Text
from matplotlib.transforms import Bbox

RADII = (8, 16, 28, 44, 64, 90, 125)  # points; past the first, a leader joins label and point
# Right and above first (the reading direction), then round the point.
ANGLES = (45, -45, 135, -135, 0, 180, 90, -90, 20, -20, 160, -160, 70, -70, 110, -110)
OFFSETS = [
    (step, radius, (radius * math.cos(math.radians(a)), radius * math.sin(math.radians(a))))
    for step, radius in enumerate(RADII)
    for a in ANGLES
]
# What a label costs, counted in steps of radius: each marker it covers, each line it crosses.
MARKER_COST = 4.0
LINE_COST = 1.5
PAD = 2.0  # pixels kept clear around each label
MARKER = 4.0  # half the side, in points, of the square a marker is taken to cover
FONTSIZE = 8

Offset = tuple[float, float]  # from the point, in points


@dataclass(frozen=True)
class Label:
    text: str
    x: float  # data coordinates
    y: float


def place(
    ax: Axes,
    labels: Sequence[Label],
    points: Sequence[tuple[float, float]],
    renderer: RendererBase,
) -> list[Annotation]:
    """Annotate ``ax`` with ``labels`` (the first placed first), near their points and off
    the markers at ``points`` and the axes' lines where they can. Call it once the figure's
    layout and the axes' limits are final: it measures where the text lands."""
    inside = ax.get_window_extent(renderer).padded(-PAD)
    half = MARKER * ax.figure.dpi / 72
    markers = [
        Bbox.from_extents(x - half, y - half, x + half, y + half)
        for x, y in (ax.transData.transform(points) if points else [])
    ]
    obstacles = (markers, _segments(ax))
    placed: list[Bbox] = []
    annotations = []
    for label in labels:
        annotation = ax.annotate(
            label.text,
            (label.x, label.y),
            xytext=(0, 0),  # moved by _aim
            textcoords="offset points",
            fontsize=FONTSIZE,
            arrowprops={"arrowstyle": "-", "color": "0.5", "linewidth": 0.6, "shrinkB": 3},
        )
        annotation.set_in_layout(False)  # placed after the layout: it must not move the axes
        radius, offset = _best(annotation, renderer, inside, placed, obstacles)
        placed.append(_aim(annotation, renderer, offset))
        annotation.arrow_patch.set_visible(radius > RADII[0])  # a leader only when far
        annotations.append(annotation)
    return annotations


def _segments(ax: Axes) -> list[Bbox]:
    """The boxes of the drawn lines' segments, in pixels: the front's steps and the reference
    lines run straight across or up, so a segment's box is the segment."""
    boxes = []
    for line in ax.get_lines():
        if line.get_linestyle() in ("None", "none", "", " "):
            continue  # markers only: a point, not a line
        xy = line.get_transform().transform(line.get_path().vertices)
        boxes += [Bbox([np.minimum(a, b), np.maximum(a, b)]).padded(1.0) for a, b in pairwise(xy)]
    return boxes


def _best(
    text: Annotation,
    renderer: RendererBase,
    inside: Bbox,
    placed: Sequence[Bbox],
    obstacles: tuple[Sequence[Bbox], Sequence[Bbox]],
) -> tuple[int, Offset]:
    """The cheapest offset that clears the edges and the other labels, nearer ones cheaper
    and each marker covered or line crossed dearer; where none clears, the least crowded."""
    markers, segments = obstacles
    best: tuple[float, int, Offset] | None = None
    crowded: list[tuple[int, tuple[int, Offset]]] = []
    for step, radius, offset in OFFSETS:
        if best is not None and step >= best[0]:
            break  # nothing farther can cost less
        box = _aim(text, renderer, offset)
        clashes = sum(box.overlaps(other) for other in placed)
        fits = _contains(inside, box)
        if fits and not clashes:
            cost = (
                step
                + MARKER_COST * sum(box.overlaps(m) for m in markers)
                + LINE_COST * sum(box.overlaps(s) for s in segments)
            )
            if best is None or cost < best[0]:
                best = (cost, radius, offset)
        crowded.append((clashes + (0 if fits else len(placed) + 1), (radius, offset)))
    return (best[1], best[2]) if best else min(crowded, key=lambda c: c[0])[1]


def _aim(text: Annotation, renderer: RendererBase, offset: Offset) -> Bbox:
    """Put ``text`` at ``offset``, aligned away from its point; return where its text (not
    its leader) lands, padded."""
    dx, dy = offset
    slack = 0.35 * math.hypot(dx, dy)  # nearly straight above or beside: centred
    text.xyann = offset
    text.set_horizontalalignment("left" if dx > slack else "right" if dx < -slack else "center")
    text.set_verticalalignment("bottom" if dy > slack else "top" if dy < -slack else "center")
    text.update_positions(renderer)
    return Text.get_window_extent(text, renderer).padded(PAD)


def _contains(outer: Bbox, inner: Bbox) -> bool:
    return (
        outer.x0 <= inner.x0
        and inner.x1 <= outer.x1
        and outer.y0 <= inner.y0
        and inner.y1 <= outer.y1
    )
