"""``hbfp-dse report``'s outputs for a paper, on a store of made-up runs (nothing trains):
JSON with each run's configuration, timings and epochs, the LaTeX table, training curves,
the target line, and the flags it refuses."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runs import invoke, ok, user_error
from fake_runs import VALIDATION_GAP, fill, filled_store

from hbfp_dse.experiments.latex import escape

# label, kind, final accuracy (None: never trained), density
RUNS = [
    ("fp32", "baseline", 0.975, 1.0),
    ("hbfp8", "baseline", 0.974, 7.9),
    ("hbfp4_b16 50%&#", "grid", 0.95, 19.4),
    ("hbfp3", "grid", None, 26.4),
]


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return filled_store(tmp_path_factory, RUNS)


def test_json_gives_each_run_its_configuration_timings_throughput_and_epochs(url: str) -> None:
    runs = {
        r["label"]: r
        for r in json.loads(ok("report", "--db", url, "--format", "json").stdout)["runs"]
    }
    fp32 = runs["fp32"]
    assert fp32["accuracy"] == 0.975  # the keys there were stay
    assert fp32["schedule"] == [{"epochs": [0, 2], "formats": {"conv": "fp32", "fc": "fp32"}}]
    assert fp32["config"] == {"model": "cnn", "dataset": "mnist-5k", "epochs": 3, "seed": 0}
    assert fp32["timings"]["train_seconds"] == pytest.approx(6.0)
    assert fp32["timings"]["epoch_seconds"] == [2.0, 2.0, 2.0]
    assert fp32["timings"]["started_at"] <= fp32["timings"]["finished_at"]
    assert fp32["throughput"] == {"samples": 3000, "samples_per_s": 500.0, "seconds_per_epoch": 2.0}
    assert [e["epoch"] for e in fp32["epochs"]] == [0, 1, 2]
    assert fp32["epochs"][-1]["test_acc"] == pytest.approx(0.975)
    assert set(fp32["epochs"][0]) == {
        "epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds",
        "images_per_s", "formats", "val_loss", "val_acc",
    }  # fmt: skip
    assert fp32["validation_accuracy"] == pytest.approx(0.975 - VALIDATION_GAP)
    untrained = runs["hbfp3"]
    assert untrained["epochs"] == []
    assert untrained["timings"]["train_seconds"] is None
    assert untrained["throughput"]["samples_per_s"] is None


def test_latex_is_a_booktabs_tabular_with_its_caption(url: str) -> None:
    tex = ok("report", "--db", url, "--format", "latex").stdout
    lines = tex.splitlines()
    assert lines[0].startswith("% Caption: Final test accuracy (\\%, mean over seeds)")
    assert lines[0].endswith("paper: cnn on mnist-5k, 3 epochs, 1 seed.")
    assert "Validation accuracy: on the split held out of the training set" in lines[0]
    assert lines[2] == r"\begin{tabular}{llrrrrr}"
    assert lines[-1] == r"\end{tabular}"
    assert re.findall(r"\\(toprule|midrule|bottomrule)", tex) == [
        "toprule",
        "midrule",
        "bottomrule",
    ]
    assert tex.count(r"\begin{") == tex.count(r"\end{")
    rows = [line for line in lines if line.endswith(r" \\")][1:]  # after the headings
    assert rows == [
        r"hbfp3 & grid & --- & --- & --- & --- & 26.40$\times$ \\",
        r"\textbf{hbfp4\_b16 50\%\&\#} & grid & 94.70 & 95.00 & --- & $+2.50$ & 19.40$\times$ \\",
        r"\textbf{hbfp8} & baseline & 97.10 & 97.40 & --- & $+0.10$ & 7.90$\times$ \\",
        r"\textbf{fp32} & baseline & 97.20 & 97.50 & --- & $+0.00$ & 1.00$\times$ \\",
    ]
    # Every row has as many cells as the column specification.
    assert all(row.count(" & ") == 6 for row in rows)


def test_latex_escapes_its_special_characters() -> None:
    assert escape(r"a_b 5% & #1 $x$ {y} ~z ^w \ <|>") == (
        r"a\_b 5\% \& \#1 \$x\$ \{y\} \textasciitilde{}z \textasciicircum{}w "
        r"\textbackslash{} \textless{}\textbar{}\textgreater{}"
    )
    assert escape("1–10 epochs") == "1--10 epochs"


@pytest.mark.parametrize("suffix", [".png", ".svg", ".html"])
def test_curves_draw_the_runs_with_epochs_and_name_the_others(
    url: str, tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"curves{suffix}"
    result = ok("report", "--db", url, "--curves", path, "--target-acc", "96%", "--format", "csv")
    assert "1 run(s) without recorded epochs left out: 4" in result.stderr
    assert f"plot written to {path}" in result.stderr
    data = path.read_bytes()
    assert len(data) > 1000
    if suffix == ".svg":
        assert b">test accuracy (%)</text>" in data
        assert b">target (96%)</text>" in data
        assert b">hbfp3</text>" not in data  # not trained: no curve
    if suffix == ".html":
        assert b'<g id="run-1-test_acc"' in data
        assert b"<table class='sortable'>" in data


def test_curves_of_a_store_without_epochs_is_a_user_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    fill(url, [("hbfp3", "grid", None, 26.4)])
    user_error(
        invoke("report", "--db", url, "--curves", tmp_path / "c.png"),
        f"--curves {tmp_path / 'c.png'}: no run has recorded an epoch yet",
    )
    assert not (tmp_path / "c.png").exists()


def test_the_plot_draws_the_target_and_the_html_report_is_interactive(
    url: str, tmp_path: Path
) -> None:
    path = tmp_path / "front.html"
    ok("report", "--db", url, "--plot", path, "--target-acc", "0.96")
    page = path.read_text()
    assert ">target (96%)</text>" in page
    assert ">FP32 (97.50%)</text>" in page
    assert "<h1>hbfp-dse report: paper: cnn on mnist-5k, 3 epochs, 1 seed</h1>" in page
    assert '<g id="point-' in page


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--target-acc", "0.9"], "--target-acc draws a target line on --plot or --curves"),
        (["--plot", "{tmp}/f.png", "--target-acc", "150"], "--target-acc 150"),
        (["--curves", "{tmp}/c.txt"], "--curves {tmp}/c.txt: give a .png, .svg, .pdf or .html"),
        (["--curves", "{tmp}/no/c.png"], "does not exist"),
        (["--layers", "--curves", "{tmp}/c.png"], "not with --layers"),
        (["--layers", "--format", "latex"], "--format latex is the results table"),
    ],
)
def test_flags_that_mean_nothing_are_refused(
    url: str, tmp_path: Path, args: list[str], fragment: str
) -> None:
    given = [a.replace("{tmp}", str(tmp_path)) for a in args]
    user_error(invoke("report", "--db", url, *given), fragment.replace("{tmp}", str(tmp_path)))


# Which of the heavy modules a command imported, in a fresh interpreter.
PROBE = """
import sys
from hbfp_dse.cli.app import app
try:
    app(sys.argv[1:])
except SystemExit:
    pass
print(sorted(m for m in ("matplotlib", "torch") if m in sys.modules), file=sys.stderr)
"""


@pytest.mark.parametrize("output", ["table", "json", "latex"])
def test_report_without_a_plot_never_imports_matplotlib(url: str, output: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "report", "--db", url, "--format", output],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stderr.strip().splitlines()[-1] == "[]", done.stderr
