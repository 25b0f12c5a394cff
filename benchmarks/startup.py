"""Time to first output of the commands people run between trainings.

Each command runs ``--repeats`` times as a fresh process (``python -m hbfp_dse``), on a store
holding one small finished sweep; the table gives the median wall time, the ratio to
``python -c "import torch"`` measured alongside, and whether the command imported torch
(from one more run under ``-X importtime``, not timed).

    python benchmarks/startup.py [--repeats 7] [--json]

The store is made once, in a temporary directory, by a three-run sweep of one epoch on 512
embedded MNIST digits (about half a minute).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

SWEEP = """\
name: startup
base: {model: cnn, dataset: mnist-5k, epochs: 1, batch_size: 64, train_size: 512}
baselines: [fp32, hbfp4, booster]
seeds: [0]
"""


def commands(db: str) -> dict[str, list[str]]:
    return {
        "--help": ["--help"],
        "formats": ["formats"],
        "report": ["report", "--db", db],
        "best": ["best", "--db", db, "--target-acc", "0.05"],
        "cost": ["cost", "--model", "cnn", "--dataset", "mnist-5k", "--schedule", "booster"],
        "cost --help": ["cost", "--help"],
        "sweep --help": ["sweep", "--help"],
    }


def timed(argv: list[str]) -> float:
    """Wall seconds of one run."""
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr}")
    return seconds


def imports_torch(argv: list[str]) -> bool:
    """Whether one run (traced by ``-X importtime``, untimed) imported torch."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *argv], capture_output=True, text=True, check=False
    )
    return any(re.search(r"\|\s*torch$", line) for line in done.stderr.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    python = [sys.executable]
    with tempfile.TemporaryDirectory() as tmp:
        sweep, db = Path(tmp, "startup.yaml"), f"sqlite:///{tmp}/results.db"
        sweep.write_text(SWEEP)
        made = subprocess.run(
            [sys.executable, "-m", "hbfp_dse", "sweep", str(sweep), "--db", db],
            capture_output=True,
            text=True,
            check=False,
        )
        if made.returncode != 0:
            raise SystemExit(f"the benchmark's sweep failed:\n{made.stderr}")
        reference = [timed([*python, "-c", "import torch"]) for _ in range(args.repeats)]
        torch_s = statistics.median(reference)
        rows = []
        for name, argv in commands(db).items():
            command = ["-m", "hbfp_dse", *argv]
            seconds = statistics.median(timed([*python, *command]) for _ in range(args.repeats))
            rows.append(
                {
                    "command": name,
                    "seconds": seconds,
                    "vs_import_torch": seconds / torch_s,
                    "imports_torch": imports_torch(command),
                }
            )
    if args.json:
        print(json.dumps({"import_torch_seconds": torch_s, "commands": rows}, indent=2))
        return
    table = Table(title=f"startup, median of {args.repeats} ('import torch': {torch_s:.2f} s)")
    for column in ("command", "seconds", "vs import torch", "imports torch"):
        table.add_column(column, justify="left" if column == "command" else "right")
    for row in rows:
        table.add_row(
            row["command"],
            f"{row['seconds']:.2f}",
            f"{row['vs_import_torch']:.2f}x",
            "yes" if row["imports_torch"] else "no",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
