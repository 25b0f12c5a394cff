"""The one table of ``benchmarks/gpu.sh``, read from the files its steps left in a folder.

python benchmarks/gpu_table.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _rows(out: Path, name: str) -> list[tuple[str, str]]:
    data = _json(out / f"{name}.out")
    if name == "tests":
        lines = (out / "tests.out").read_text().strip().splitlines()
        return [("pytest -k cuda", lines[-1] if lines else "no output")]
    if data is None:
        return [("", "no result: see " + str(out / f"{name}.log"))]
    if name == "quantize":
        return [
            (f"{r['format']} {r['rounding']}, flat, {r['device']}", f"{r['ratio']:.2f}x x*2")
            for r in data
        ]
    if name == "operands":
        return [
            (
                f"{r['format']} {r['rounding']}, ResNet-20 step operands",
                f"{r['step_ratio']:.2f}x x*2 (worst {r['worst_ratio']:.1f}x {r['worst_operand']})",
            )
            for r in data
        ]
    if name.startswith("bench"):
        return [
            (
                f"{r['format']} fwd {r['forward_rounding']} bwd {r['backward_rounding']}",
                f"step {r['ratio']:.2f}x FP32 ({r['emulated_step_s'] * 1e3:.1f} vs "
                f"{r['fp32_step_s'] * 1e3:.1f} ms)",
            )
            for r in data
        ]
    epoch = data["epochs"][0] if data.get("epochs") else None
    if epoch is None:
        return [("", f"status {data.get('status')}: {data.get('message')}")]
    return [
        (
            f"{name.removeprefix('epoch_')}, 1 epoch of 50,000 images",
            f"{epoch['seconds']:.1f} s, {epoch['images_per_s']:.0f} images/s, test acc "
            f"{epoch['test_acc']:.2%}",
        )
    ]


def main() -> None:
    out = Path(sys.argv[1])
    table = Table(title=f"benchmarks/gpu.sh ({out})")
    for column in ("step", "exit", "s", "case", "figure"):
        table.add_column(column)
    for line in (out / "steps.txt").read_text().splitlines():
        name, code, seconds = line.split()
        status = "ok" if code == "0" else ("timeout" if code == "124" else code)
        for index, (case, figure) in enumerate(_rows(out, name)):
            first = index == 0
            table.add_row(
                name if first else "", status if first else "", seconds if first else "",
                case, figure,
            )  # fmt: skip
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
