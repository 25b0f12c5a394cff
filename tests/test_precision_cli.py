"""Where precision is lost, from the command line: ``report --layers`` over a sweep trained
with ``analysis``, ``analyze`` ranking a layer made sensitive on purpose first, and
``search --from-analysis`` trying the proposal first."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import yaml
from cli_runs import invoke, ok, user_error
from optuna.trial import TrialState

from hbfp_dse.emulation import Operand
from hbfp_dse.experiments.search.proposal import read_proposal
from hbfp_dse.experiments.store import Store

pytestmark = pytest.mark.usefixtures("eager_quantizer")

WATCHED = """
name: watched
base: {model: mlp, dataset: mnist-5k, train_size: 256, test_size: 64, epochs: 2,
       batch_size: 64, device: cpu, analysis: {every: 2}}
baselines: [fp32, hbfp4, booster]
"""


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("watched")
    file = root / "watched.yaml"
    file.write_text(WATCHED)
    url = f"sqlite:///{root / 'r.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HBFP_DSE_COMPILE", "0")
        ok("sweep", file, "--db", url)
    return url


def test_report_layers_gives_each_runs_statistics_as_a_table(watched: str) -> None:
    out = ok("report", "--layers", "--db", watched).stdout
    assert "hbfp4 (run 2, seed 0)" in out
    assert "booster (run 3, seed 0)" in out
    assert "fp32 (run" not in out  # nothing quantized, nothing to show
    header = next(line for line in out.splitlines() if "W1 x" in line)
    for column in ("W1 w", "W1 dy", "SQNR dB x", "flushed dy"):
        assert column in header
    rows = [line for line in out.splitlines() if line.startswith("│ layers.")]
    assert len(rows) == 6  # three layers of two runs
    assert any("hbfp6,hbfp4" in row or "hbfp4,hbfp6" in row for row in rows)  # booster's


def test_report_layers_as_json_and_csv_has_one_row_per_run_epoch_layer_and_operand(
    watched: str,
) -> None:
    rows = json.loads(ok("report", "--layers", "--db", watched, "--format", "json").stdout)[
        "statistics"
    ]
    keys = {(r["run"], r["epoch"], r["layer"], r["operand"]) for r in rows}
    assert len(keys) == len(rows)
    # Three layers, six operands each but two for the first layer's unneeded data gradient.
    assert len(rows) == 2 * 2 * (3 * 6 - 2)
    store = Store(watched, create=False)
    stored = store.operand_statistics([2, 3])
    store.close()
    first = next(r for r in rows if r["run"] == 2)
    epoch, statistics = stored[2][0]
    assert (first["epoch"], first["layer"], first["operand"]) == (
        epoch,
        statistics.layer,
        statistics.operand,
    )
    assert first["wasserstein"] == statistics.wasserstein
    assert {r["operand"] for r in rows} == {o.value for o in Operand}
    table = list(
        csv.DictReader(
            io.StringIO(ok("report", "--layers", "--db", watched, "--format", "csv").stdout)
        )
    )
    assert len(table) == len(rows)
    assert {"run", "label", "epoch", "layer", "operand", "sqnr_db", "wasserstein"} <= set(table[0])


@pytest.mark.parametrize("suffix", [".png", ".svg", ".html"])
def test_report_layers_draws_heatmaps(watched: str, tmp_path: Path, suffix: str) -> None:
    plot = tmp_path / f"layers{suffix}"
    result = ok(
        "report",
        "--layers",
        "--db",
        watched,
        "--plot",
        plot,
        "--statistic",
        "sqnr_db",
        "--operand",
        "dy",
    )
    assert f"plot written to {plot}" in result.stderr
    text_or_bytes = plot.read_bytes()
    assert len(text_or_bytes) > 1000
    if suffix == ".svg":
        assert b"layers.1" in text_or_bytes  # labels are text, not paths
        assert b"SQNR (dB) per layer and epoch, operands: dy" in text_or_bytes
    if suffix == ".html":
        assert b"<svg" in text_or_bytes  # the heatmaps inline
        assert b"<td>layers.5</td>" in text_or_bytes


def test_report_layers_errors(watched: str, tmp_path: Path) -> None:
    user_error(
        invoke("report", "--layers", "--db", watched, "--statistic", "speed"),
        "--statistic 'speed' is not one of sqnr_db",
    )
    user_error(
        invoke("report", "--db", watched, "--statistic", "sqnr_db"),
        "--statistic and --operand choose what --layers shows",
    )
    user_error(
        invoke("report", "--layers", "--db", watched, "--operand", "z"),
        "--operand 'z' is not one of all, x, w, dy",
    )
    user_error(
        invoke(
            "report",
            "--layers",
            "--db",
            watched,
            "--sweep",
            "watched",
            "--plot",
            tmp_path / "none" / "x.png",
        ),
        "does not exist",
    )
    plain = tmp_path / "plain.yaml"
    plain.write_text(
        WATCHED.replace("name: watched", "name: plain")
        .replace(", analysis: {every: 2}", "")
        .replace("[fp32, hbfp4, booster]", "[hbfp8]")
    )
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    ok("sweep", plain, "--db", url)
    user_error(invoke("report", "--layers", "--db", url), "no run has layer statistics")


SENSITIVE = "layers.3"  # the middle Linear of the MLP


def sensitive_checkpoint(tmp_path: Path, config_file: Path) -> Path:
    """The trained MLP with one hidden unit that never fires (its row and bias zero) and a
    huge weight on it in the next layer: the same function in FP32, but in blocks of that
    layer's inputs the huge weight sets the shared exponent and the others flush to zero."""
    from hbfp_dse.training.config import load_train_config
    from hbfp_dse.training.trainer import trained_state

    state = trained_state(load_train_config(config_file, {})).model.state_dict()
    with torch.no_grad():
        state["layers.1.weight"][7] = 0.0
        state["layers.1.bias"][7] = 0.0
        state["layers.3.weight"][:, 7] = 1000.0
    path = tmp_path / "sensitive.pt"
    torch.save({"model": state}, path)
    return path


def analyze_file(tmp_path: Path) -> Path:
    file = tmp_path / "mlp.yaml"
    file.write_text(
        "model: mlp\ndataset: mnist-5k\ntrain_size: 256\ntest_size: 64\nbatch_size: 32\n"
        "device: cpu\nepochs: 1\n"
    )
    return file


def test_analyze_ranks_a_layer_made_sensitive_first_and_proposes_to_boost_it(
    tmp_path: Path,
) -> None:
    proposal, file = tmp_path / "proposal.yaml", analyze_file(tmp_path)
    result = ok(
        "analyze",
        file,
        "--formats",
        "hbfp6,hbfp4",
        "--checkpoint",
        sensitive_checkpoint(tmp_path, file),
        "--batches",
        "2",
        "--format",
        "json",
        "--proposal",
        proposal,
    )
    found: dict[str, Any] = json.loads(result.stdout)
    assert found["formats"] == ["hbfp4", "hbfp6"]  # narrowest first
    assert found["ranking"][0] == SENSITIVE
    assert found["boosted"] == [SENSITIVE]
    results = {(r["layer"], r["format"]): r for r in found["results"]}
    worst = results[(SENSITIVE, "hbfp4")]
    assert worst["loss_increase"] > 10 * max(
        results[(name, "hbfp4")]["loss_increase"] for name in ("layers.1", "layers.5")
    )
    for fmt in ("hbfp4", "hbfp6"):
        flushed = {s["operand"]: s["flushed"] for s in results[(SENSITIVE, fmt)]["statistics"]}
        assert flushed["w_forward"] > 0.25  # its block: a quarter of the 256 inputs
    pasted = yaml.safe_load(proposal.read_text())
    assert pasted["baselines"][0]["schedule"]["rules"] == [
        {"format": "hbfp4"},
        {"format": "hbfp6", "layers": [SENSITIVE]},
    ]
    assert found["proposal"] == pasted["baselines"][0]
    parsed = read_proposal(proposal)
    assert (parsed.narrow.name, parsed.wide.name, parsed.boosted) == (
        "hbfp4",
        "hbfp6",
        (SENSITIVE,),
    )


def test_analyze_prints_a_ranked_table_and_a_proposal_to_paste(tmp_path: Path) -> None:
    out = ok("analyze", analyze_file(tmp_path), "--formats", "hbfp4", "--batches", "1").stdout
    assert "layer sensitivity" in out
    assert "baselines:" in out
    assert "- format: hbfp4" in out


def test_analyze_errors(tmp_path: Path) -> None:
    file = analyze_file(tmp_path)
    user_error(invoke("analyze", file, "--formats", "hbfp99"), "hbfp99")
    user_error(invoke("analyze", file, "--checkpoint", tmp_path / "none.pt"), "does not exist")
    other = tmp_path / "other.pt"
    torch.save({"model": {"w": torch.zeros(1)}}, other)
    user_error(
        invoke("analyze", file, "--checkpoint", other, "--batches", "1"), "holds another model"
    )
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    user_error(invoke("analyze", file, "--checkpoint", junk), "cannot be read")


SEARCHED = """
name: searched
base: {model: mlp, dataset: mnist-5k, epochs: 1, train_size: 128, test_size: 64,
       batch_size: 64, device: cpu}
baselines: [hbfp8]
search:
  first: {mantissa_bits: [4, 6, 8], block_size: [16, 64]}
  middle: {mantissa_bits: [3, 4, 6], block_size: [16, 64]}
  last: {mantissa_bits: [4, 6, 8], block_size: [16, 64]}
  boost_last_epochs: [0, 1]
  trials: 1
"""


def test_search_tries_the_analysis_proposal_first(tmp_path: Path) -> None:
    file = tmp_path / "searched.yaml"
    file.write_text(SEARCHED)
    proposal = tmp_path / "p.yaml"
    proposal.write_text(
        "baselines:\n- label: analysis\n  schedule:\n    rules:\n    - {format: hbfp4_b16}\n"
        "    - {format: hbfp6_b16, layers: [layers.5]}\n"
    )
    db = f"sqlite:///{tmp_path / 'r.db'}"
    ok("search", file, "--target-acc", "0.05", "--db", db, "--from-analysis", proposal)
    trial, *queued = optuna.load_study(study_name="searched@0.05", storage=db).trials
    assert trial.state is TrialState.COMPLETE  # the one trial of the budget
    assert trial.user_attrs["anchor"] == "analysis"
    assert {t.user_attrs["anchor"] for t in queued} == {"hbfp6", "booster"}  # no 8 in middle
    assert trial.params == {
        "mantissa_bits[layers.*]": 4,
        "block_size[layers.*]": 16,
        "mantissa_bits[first]": 4,
        "block_size[first]": 16,
        "mantissa_bits[last]": 6,  # the boosted layer
        "block_size[last]": 16,
        "boost_last_epochs": 0,
        "sub_block": None,
        "rounding": "nearest",
    }


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("baselines: [hbfp4]\n", "not an analysis proposal"),
        ("proposal: {schedule: {rules: [{format: fp8_e4m3}]}}\n", "fp8_e4m3 is none"),
        ("proposal: {schedule: {rules: [{format: hbfp4}, {format: hbfp6}]}}\n", "needs 'layers'"),
        (
            "proposal: {schedule: {rules: [{format: hbfp4}, {format: hbfp6, layers: [fc]}]}}\n",
            "the model has no layer 'fc' (its layers: layers.1, layers.3, layers.5)",
        ),
    ],
)
def test_a_bad_proposal_is_a_user_error(tmp_path: Path, text: str, fragment: str) -> None:
    file = tmp_path / "searched.yaml"
    file.write_text(SEARCHED)
    proposal = tmp_path / "p.yaml"
    proposal.write_text(text)
    db = f"sqlite:///{tmp_path / 'r.db'}"
    user_error(
        invoke("search", file, "--target-acc", "0.05", "--db", db, "--from-analysis", proposal),
        fragment,
    )
    assert not (tmp_path / "r.db").exists()  # nothing written
