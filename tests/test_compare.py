"""``hbfp-dse compare``: differences of mean test accuracy with Welch's interval, checked
against SciPy's own Welch test, and the command's outputs and refusals."""

from __future__ import annotations

import json

import pytest
from cli_runs import invoke, ok, user_error
from fake_runs import fill, filled_store, run
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from hbfp_dse.experiments.comparison import compare, reference_of, welch_half_width
from hbfp_dse.experiments.report import summarize

# Accuracies are counts over a test set: multiples of 1/10,000 here.
accuracies = st.lists(st.integers(5000, 10000).map(lambda k: k / 10000), min_size=2, max_size=6)


# SciPy warns of lost precision for values a few 1/10,000 apart; the comparison is approx.
@pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")
@settings(max_examples=60, deadline=None)
@given(accuracies, accuracies)
def test_welch_interval_equals_scipys(a: list[float], b: list[float]) -> None:
    half = welch_half_width(a, b)
    if len(set(a)) == len(set(b)) == 1:
        assert half is None  # no spread: no interval
        return
    assert half is not None
    low, high = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert half == pytest.approx((high - low) / 2, rel=1e-9, abs=1e-12)


def test_one_seed_has_no_interval() -> None:
    assert welch_half_width([0.9], [0.8, 0.85]) is None


def seeds(label: str, values: list[float], density: float) -> list:
    return [run(0, label, v, density, seed=i) for i, v in enumerate(values)]


def test_verdicts_follow_the_interval_of_the_difference() -> None:
    summaries = summarize(
        seeds("fp32", [0.900, 0.902, 0.898], 1.0)
        + seeds("hbfp8", [0.901, 0.899, 0.903], 7.9)  # within noise
        + seeds("hbfp4", [0.880, 0.881, 0.879], 18.95)  # clearly lower
        + seeds("bf16", [0.92, 0.921, 0.919], 4.84)  # clearly higher
        + seeds("hbfp6", [0.91], 11.79)
        + seeds("hbfp5", [0.9, 0.9, 0.9], 14.12)
    )
    fp32 = reference_of(summaries, None)
    verdicts = {d.summary.label: d.verdict for d in compare(summaries, fp32)}
    assert verdicts == {
        "hbfp8": "no difference detected",
        "hbfp4": "lower",
        "bf16": "higher",
        "hbfp6": "one seed: cannot tell",
        "hbfp5": "no difference detected",  # fp32's seeds spread
    }
    same = summarize(seeds("fp32", [0.9, 0.9], 1.0) + seeds("hbfp4", [0.88, 0.88], 18.95))
    [unspread] = compare(same, reference_of(same, None))
    assert unspread.interval is None
    assert unspread.verdict == "no spread over seeds: cannot tell"
    [narrow] = compare(summaries[2:3], reference_of(summaries, "hbfp8"))
    assert narrow.density_ratio == pytest.approx(18.95 / 7.9)
    assert narrow.difference == pytest.approx(0.880 - 0.901)


STORED = [
    ("fp32", "baseline", 0.90, 1.0, 0),
    ("fp32", "baseline", 0.91, 1.0, 1),
    ("hbfp4", "baseline", 0.85, 18.95, 0),
    ("hbfp4", "baseline", 0.86, 18.95, 1),
    ("hbfp8", "baseline", 0.905, 7.9, 0),
    ("hbfp8", "baseline", 0.906, 7.9, 1),
]


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return filled_store(tmp_path_factory, STORED)


def test_compare_prints_each_difference_against_fp32(url: str) -> None:
    out = ok("compare", "--db", url).output
    assert "against fp32" in out
    [line] = [line for line in out.splitlines() if "hbfp4" in line]
    assert "-5.00" in line
    assert "lower" in line
    markdown = ok("compare", "hbfp4", "--db", url, "--format", "markdown").output.splitlines()
    assert markdown[0].startswith("| configuration | test acc % | seeds | vs fp32 | 95% CI |")
    assert markdown[1].startswith("| --- | ---: |")
    assert markdown[2].startswith("| hbfp4 | 85.50 | 2 | -5.00 | [")
    assert len(markdown) == 3


def test_compare_json_against_another_reference(url: str) -> None:
    found = json.loads(ok("compare", "--db", url, "--against", "hbfp8", "--format", "json").output)
    assert found["reference"] == "hbfp8"
    by_label = {d["configuration"]: d for d in found["differences"]}
    assert set(by_label) == {"fp32", "hbfp4"}
    low, high = by_label["hbfp4"]["ci95"]
    assert low < by_label["hbfp4"]["difference"] < high
    assert by_label["hbfp4"]["density_ratio"] == pytest.approx(18.95 / 7.9)


def test_an_unknown_configuration_names_the_stored_ones(url: str) -> None:
    user_error(invoke("compare", "hbfp3", "--db", url), "no configuration labelled 'hbfp3'")
    user_error(invoke("compare", "--against", "bf16", "--db", url), "fp32, hbfp4, hbfp8")


def test_the_report_table_in_markdown(url: str) -> None:
    lines = ok("report", "--db", url, "--format", "markdown").output.splitlines()
    assert lines[0].startswith("| configuration | val acc % | test acc % | ± 95% CI |")
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| hbfp4", "| hbfp8", "| fp32"]


def test_only_the_reference_sweeps_configurations_are_compared(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    url = filled_store(tmp_path_factory, STORED)
    fill(url, [("hbfp4", "baseline", 0.5, 18.95, 0), ("hbfp4", "baseline", 0.6, 18.95, 1)], "other")
    rows = ok("compare", "--db", url, "--format", "markdown").output.splitlines()[2:]
    assert [row.split(" | ")[:3] for row in rows] == [
        ["| hbfp4", "85.50", "2"],
        ["| hbfp8", "90.55", "2"],
    ]
    found = json.loads(ok("compare", "hbfp4", "--db", url, "--format", "json").output)
    assert [d["sweep"] for d in found["differences"]] == ["paper"]
    fill(url, [("fp32", "baseline", 0.7, 1.0, 0)], "third")
    user_error(
        invoke("compare", "--db", url), "FP32 configurations of several sweeps (paper, third)"
    )
    user_error(invoke("compare", "--db", url, "--sweep", "other"), "no FP32 configuration")
