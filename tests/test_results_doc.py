"""docs/RESULTS.md's printed tables are what their commands print from the committed store."""

from __future__ import annotations

import re
import shlex
import shutil
import sqlite3
from pathlib import Path

import pytest
from cli_runs import ok

from hbfp_dse.experiments.sweepfile import expand, load_sweep

ROOT = Path(__file__).parent.parent
RESULTS = ROOT / "docs" / "RESULTS.md"
STORE = ROOT / "docs" / "results" / "paper.db"
# A one-command bash block, then (after a blank line) the table that command prints.
PRINTED = re.compile(
    r"```bash\n(hbfp-dse [^\n]*--format markdown)\n```\n\n(\| configuration[^\n]*\n(?:\|[^\n]*\n)+)"
)


def printed_tables() -> list[tuple[str, str]]:
    return PRINTED.findall(RESULTS.read_text())


def test_the_results_page_shows_printed_tables() -> None:
    commands = [command for command, _ in printed_tables()]
    assert "hbfp-dse report --sweep paper-cpu --format markdown" in commands
    assert "hbfp-dse compare --sweep paper-cpu --format markdown" in commands


@pytest.mark.parametrize(("command", "table"), printed_tables())
def test_a_printed_table_is_what_its_command_prints(
    command: str, table: str, tmp_path: Path
) -> None:
    store = tmp_path / "paper.db"  # a copy: reading must leave the committed store as it is
    shutil.copyfile(STORE, store)
    args = shlex.split(command)[1:]
    assert ok(*args, "--db", f"sqlite:///{store}").output == table


@pytest.mark.parametrize("sweep", ["paper-cpu", "paper-cpu-layers", "vit", "gpt"])
def test_the_committed_store_holds_exactly_each_sweep_files_runs(sweep: str) -> None:
    spec, _ = load_sweep(ROOT / "sweeps" / f"{sweep}.yaml")
    planned = {(run.label, run.run_hash) for run in expand(spec)}
    store = sqlite3.connect(f"file:{STORE}?mode=ro", uri=True)
    stored = store.execute(
        "SELECT r.label, r.run_hash, r.status FROM hbfp_runs r "
        "JOIN hbfp_sweeps s ON r.sweep_id = s.id WHERE s.name = ?",
        (sweep,),
    ).fetchall()
    store.close()
    assert {(label, run_hash) for label, run_hash, _ in stored} == planned
    assert {status for _, _, status in stored} == {"done"}
