"""A self-contained interactive HTML report: a figure as inline SVG whose points show their
details on hover, over a table sortable by any column. Nothing is fetched from the network:
the page opens offline and can be mailed or archived as one file."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence

# The details each hoverable element (by SVG id) shows: field name -> value, in order.
Tips = Mapping[str, Mapping[str, str]]

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
figure { margin: 0 0 1.5em 0; }
figure svg { width: 100%; max-width: 1400px; height: auto; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
td[data-sort] { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f2f2f2; cursor: pointer; user-select: none; }
th[aria-sort=ascending]::after { content: " \\25B2"; }
th[aria-sort=descending]::after { content: " \\25BC"; }
#tip { position: fixed; pointer-events: none; background: #fff; border: 1px solid #888;
  padding: 0.4em 0.6em; font-size: 0.85em; max-width: 36em; box-shadow: 0 2px 6px #0003;
  display: grid; grid-template-columns: auto 1fr; gap: 0.1em 0.8em; }
#tip[hidden] { display: none; }
.hoverable { cursor: pointer; }
"""

# Hover: the details of the element under the pointer, from the JSON of id -> fields.
# Sort: by the clicked column, numbers by value (data-sort), the rest as text; empty last.
SCRIPT = """
const tips = JSON.parse(document.getElementById("tips").textContent);
const tip = document.getElementById("tip");
function show(fields, event) {
  tip.replaceChildren(...Object.entries(fields).flatMap(([name, value]) => {
    const key = document.createElement("b");
    const text = document.createElement("span");
    key.textContent = name;
    text.textContent = value;
    return [key, text];
  }));
  tip.hidden = false;
  move(event);
}
function move(event) {
  tip.style.left = Math.min(event.clientX + 14, innerWidth - tip.offsetWidth - 4) + "px";
  tip.style.top = Math.min(event.clientY + 14, innerHeight - tip.offsetHeight - 4) + "px";
}
for (const [id, fields] of Object.entries(tips)) {
  const element = document.getElementById(id);
  if (!element) continue;
  element.classList.add("hoverable");
  element.addEventListener("mouseover", (event) => show(fields, event));
  element.addEventListener("mousemove", move);
  element.addEventListener("mouseout", () => { tip.hidden = true; });
}
function compare(a, b, up) {
  const x = a.dataset.sort, y = b.dataset.sort;
  if (x !== undefined && y !== undefined) return up ? x - y : y - x;
  if (x !== undefined || y !== undefined) return x !== undefined ? -1 : 1;
  const order = a.textContent.localeCompare(b.textContent, undefined, { numeric: true });
  return up ? order : -order;
}
for (const table of document.querySelectorAll("table.sortable")) {
  for (const [column, heading] of [...table.tHead.rows[0].cells].entries()) {
    heading.addEventListener("click", () => {
      const up = heading.getAttribute("aria-sort") !== "ascending";
      for (const other of heading.parentNode.cells) other.removeAttribute("aria-sort");
      heading.setAttribute("aria-sort", up ? "ascending" : "descending");
      const body = table.tBodies[0];
      const rows = [...body.rows];
      rows.sort((a, b) => compare(a.cells[column], b.cells[column], up));
      body.append(...rows);
    });
  }
}
"""


def page(title: str, svg: str, rows: Sequence[Mapping[str, object]], tips: Tips) -> str:
    """The report: ``svg`` (a whole SVG document, as matplotlib writes it) with ``tips`` for
    the elements of those ids, and ``rows`` as a sortable table."""
    heading = html.escape(title)
    hint = "Hover over a point or a curve for its details; click" if tips else "Click"
    return (
        f"<!doctype html>\n<html lang='en'><head><meta charset='utf-8'><title>{heading}</title>"
        f"<style>{STYLE}</style></head><body>\n<h1>{heading}</h1>\n"
        f"<p>{hint} a column's heading to sort the table by it.</p>\n"
        f"<figure>{_inline(svg)}</figure>\n{_table(rows)}\n"
        "<div id='tip' hidden></div>\n"
        f"<script type='application/json' id='tips'>{_json(tips)}</script>\n"
        f"<script>{SCRIPT}</script>\n</body></html>\n"
    )


def _table(rows: Sequence[Mapping[str, object]]) -> str:
    """``rows`` as a table whose numeric cells carry their value for sorting."""
    if not rows:
        return "<p>No runs stored yet.</p>"
    header = "".join(f"<th>{html.escape(str(key))}</th>" for key in rows[0])
    body = "".join(
        "<tr>" + "".join(_cell(value) for value in row.values()) + "</tr>\n" for row in rows
    )
    return (
        f"<table class='sortable'><thead><tr>{header}</tr></thead>\n<tbody>\n{body}</tbody></table>"
    )


def _cell(value: object) -> str:
    text = html.escape(str(value))
    number = _number(value)
    return f"<td>{text}</td>" if number is None else f"<td data-sort='{number!r}'>{text}</td>"


def _number(value: object) -> float | None:
    """The cell as a number (``97.50``, ``+0.42``, ``4.84x``), or None for text and
    placeholders such as ``-``."""
    if isinstance(value, bool):
        return None
    try:
        number = float(str(value).removesuffix("x").removesuffix("%"))
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _inline(svg: str) -> str:
    # The XML declaration and DOCTYPE belong to a file of its own, not inside HTML.
    return svg[svg.index("<svg") :]


def _json(tips: Tips) -> str:
    # "</" would end the script element early, whatever a label contains.
    return json.dumps(tips).replace("</", "<\\/")
