"""Figures a paper can use: a title that says what was run, FP32 and target lines, stable
colours, labels that neither overlap nor leave the axes, log ticks across the range, SVG text
as text, and the self-contained interactive HTML report."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from fake_runs import quick_sweep, run
from matplotlib.colors import to_hex
from matplotlib.text import Text

from hbfp_dse.cli.tables import summary_rows, titled_rows
from hbfp_dse.experiments import curves, plots, styles
from hbfp_dse.experiments.captions import schedule_text, subject
from hbfp_dse.experiments.report import summarize, table_order


def summaries_of(runs):
    return table_order(summarize(runs))


def front_axes(fig):
    return fig.axes[0]


def point_colours(fig) -> dict[str, str]:
    """Each labelled configuration's marker colour, by the SVG id of its point."""
    return {
        line.get_gid(): to_hex(line.get_color())
        for line in front_axes(fig).get_lines()
        if (line.get_gid() or "").startswith("point-")
    }


def test_the_title_names_sweep_model_data_epochs_and_seeds() -> None:
    assert subject(quick_sweep()) == "paper: cnn on mnist-5k, 3 epochs, 2 seeds"
    mixed = [
        run(1, "fp32", 0.9, 1.0, sweep="a", config={"model": "mlp", "epochs": 1}),
        run(2, "fp32", 0.9, 1.0, sweep="b", config={"dataset": "fashion-mnist", "epochs": 10}),
        run(3, "hbfp4", 0.9, 19.0, sweep="c", seed=1),
        run(4, "hbfp4", 0.9, 19.0, sweep="c", seed=2),
        run(5, "hbfp4", 0.9, 19.0, sweep="d"),
    ]
    assert subject(mixed) == (
        "a, b, c +1 more: mlp, cnn on mnist-5k, fashion-mnist, 1–10 epochs, 1–2 seeds"
    )
    fig = plots.figure(summaries_of(quick_sweep()))
    assert fig.get_suptitle() == "paper: cnn on mnist-5k, 3 epochs, 2 seeds"


def test_fp32_and_the_target_are_lines_named_in_the_legend() -> None:
    fig = plots.figure(summaries_of(quick_sweep()), target=0.96)
    ax = front_axes(fig)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "FP32 (97.60%)" in legend  # the mean of its two seeds, 97.5% and 97.7%
    assert "target (96%)" in legend
    assert "Pareto front" in legend
    level = {line.get_label(): line.get_ydata()[0] for line in ax.get_lines()}
    assert level["FP32 (97.60%)"] == pytest.approx(97.6)
    assert level["target (96%)"] == pytest.approx(96.0)
    assert "target (96%)" not in [
        t.get_text() for t in front_axes(plots.figure(summaries_of(quick_sweep()))).texts
    ]


def test_each_sweep_has_its_own_fp32_line() -> None:
    runs = [run(1, "fp32", 0.9, 1.0, sweep="a"), run(2, "fp32", 0.8, 1.0, sweep="b")]
    legend = [
        t.get_text() for t in front_axes(plots.figure(summaries_of(runs))).get_legend().get_texts()
    ]
    assert {"FP32, a (90.00%)", "FP32, b (80.00%)"} <= set(legend)


def test_a_baseline_has_the_same_colour_in_every_plot() -> None:
    everything = summaries_of(quick_sweep())
    some = summaries_of([r for r in quick_sweep() if r.label in ("hbfp4", "bf16", "hbfp3")])
    for summaries in (everything, some):
        colours = point_colours(plots.figure(summaries))
        by_label = {s.label: colours[gid] for gid, s in plots.measured(summaries)}
        assert by_label["hbfp4"] == styles.BASELINE_COLOURS["hbfp4"]
        assert by_label["bf16"] == styles.BASELINE_COLOURS["bf16"]
        assert by_label["hbfp3"] == styles.KIND_COLOURS["grid"]  # grid points: by kind
    assert styles.colour("mxfp4_e2m1") == styles.colour("mxfp8_e4m3") == "#ff7f0e"
    assert styles.colour("fp8_e5m2") == "#e377c2"
    # Hashed (not Python's salted hash()): the same in every process and release.
    assert styles.colour("my custom schedule") == "#843c39"
    assert styles.linestyle("my custom schedule") == "--"
    assert styles.linestyle("hbfp4") == "-"


def crowded() -> list:
    """Twelve labelled baselines in a small corner, with long names."""
    return [
        run(i + 1, f"baseline number {i} hbfp{i}_b16", 0.95 + 0.001 * (i % 4), 10 + 0.4 * i)
        for i in range(12)
    ] + [run(20, "fp32", 0.97, 1.0)]


@pytest.mark.parametrize("runs", [quick_sweep(), crowded()], ids=["quick", "crowded"])
def test_labels_neither_overlap_nor_leave_the_axes(runs) -> None:
    summaries = summaries_of(runs)
    fig = plots.figure(summaries, target=0.9)
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    ax = front_axes(fig)
    inside = ax.get_window_extent(renderer)
    labelled = [s for _, s in plots.measured(summaries) if s.kind == "baseline" or s.pareto]
    assert [t.get_text() for t in ax.texts] == [
        s.label[:31] + "…" if len(s.label) > 32 else s.label for s in labelled
    ]
    boxes = [Text.get_window_extent(t, renderer) for t in ax.texts]
    for box in boxes:
        assert inside.x0 <= box.x0
        assert box.x1 <= inside.x1
        assert inside.y0 <= box.y0
        assert box.y1 <= inside.y1
    for first, second in itertools.combinations(boxes, 2):
        assert not first.overlaps(second)


def tick_labels(axis) -> list[str]:
    low, high = axis.get_view_interval()
    return [
        t.get_text()
        for t in axis.get_ticklabels()
        if t.get_text() and low <= t.get_position()[0 if axis.axis_name == "x" else 1] <= high
    ]


def test_the_log_density_axis_is_labelled_across_its_range() -> None:
    fig = plots.figure(summaries_of(quick_sweep()))
    ax = front_axes(fig)
    fig.draw_without_rendering()
    assert ax.get_xscale() == "log"
    assert tick_labels(ax.xaxis) == ["1x", "2x", "5x", "10x", "20x"]
    narrow = plots.figure(summaries_of([run(1, "hbfp8", 0.9, 7.9), run(2, "hbfp4", 0.8, 19.0)]))
    narrow.draw_without_rendering()
    assert front_axes(narrow).get_xscale() == "linear"
    assert len(tick_labels(front_axes(narrow).xaxis)) >= 4
    assert all(label.endswith("x") for label in tick_labels(front_axes(narrow).xaxis))


def test_svg_keeps_its_text_as_text(tmp_path: Path) -> None:
    path = tmp_path / "front.svg"
    summaries = summaries_of(quick_sweep())
    plots.save(path, summaries, titled_rows(summary_rows(summaries)), target=0.96)
    svg = path.read_text()
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    assert {"hbfp4", "fp32", "booster", "target (96%)", "20x"} <= set(texts)
    assert "paper: cnn on mnist-5k, 3 epochs, 2 seeds" in texts
    assert "DejaVuSans-" not in svg  # no glyphs drawn as paths


def html_report(tmp_path: Path) -> str:
    path = tmp_path / "report.html"
    summaries = summaries_of(quick_sweep())
    plots.save(path, summaries, titled_rows(summary_rows(summaries)), target=0.96)
    return path.read_text()


def test_the_html_report_is_self_contained(tmp_path: Path) -> None:
    page = html_report(tmp_path)
    assert "<img" not in page
    assert "<link" not in page
    assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:)?//", page)
    # The only addresses are the SVG's XML namespaces, which nothing fetches.
    assert set(re.findall(r"https?://[^\s'\"<>]+", page)) <= {
        "http://www.w3.org/2000/svg",
        "http://www.w3.org/1999/xlink",
    }


def test_the_html_report_gives_every_point_details_and_a_sortable_table(tmp_path: Path) -> None:
    page = html_report(tmp_path)
    tips = json.loads(
        re.search(r"<script type='application/json' id='tips'>(.*?)</script>", page, re.S)[1]
    )
    svg = page[page.index("<svg") : page.index("</svg>")]
    assert set(tips) == set(re.findall(r'<g id="(point-\d+)"', svg))
    assert len(tips) == 10
    fp32 = next(t for t in tips.values() if t["configuration"] == "fp32")
    assert fp32["accuracy"].startswith("97.60% ± ")
    assert fp32["seeds"] == "2 of 2 done"
    assert fp32["schedule"] == "epochs 1–3: fp32"
    assert "<table class='sortable'>" in page
    assert "<th>test acc %</th>" in page  # the terminal table's columns
    assert "<th>val acc %</th>" in page
    assert "std_pct" not in page
    assert "<td data-sort='97.6'>97.60</td>" in page
    assert "<td>baseline</td>" in page  # text cells sort as text


def test_a_label_cannot_end_the_script_that_holds_the_details(tmp_path: Path) -> None:
    path = tmp_path / "r.html"
    runs = [run(1, "</script><b>x", 0.9, 2.0)]
    summaries = summaries_of(runs)
    plots.save(path, summaries, summary_rows(summaries))
    page = path.read_text()
    assert "</script><b>x" not in page
    assert "<\\/script><b>x" in page  # in the JSON, which reads it back as written


def test_schedule_text_names_the_layers_that_differ() -> None:
    schedule = [
        {"epochs": [0, 1], "formats": {"conv1": "hbfp6", "conv2": "hbfp4", "fc": "hbfp4"}},
        {"epochs": [2, 2], "formats": {"conv1": "hbfp6", "conv2": "hbfp6", "fc": "hbfp6"}},
    ]
    assert schedule_text(schedule) == "epochs 1–2: hbfp4, conv1 hbfp6; epoch 3: hbfp6"
    assert schedule_text(None) == "-"


# A browser hovers over a point and sorts the table twice by a column.
SELFTEST = """<script>
const point = document.querySelector("g[id^=point-] path");
point.dispatchEvent(new MouseEvent("mouseover", {bubbles: true, clientX: 10, clientY: 10}));
const shown = document.getElementById("tip");
const heading = [...document.querySelectorAll("th")].find((h) => h.textContent === "test acc %");
const column = [...heading.parentNode.cells].indexOf(heading);
const read = () =>
  [...document.querySelectorAll("tbody tr")].map((row) => row.cells[column].textContent);
heading.click();
const up = read();
heading.click();
const details = shown.hidden ? null : shown.textContent;
document.body.dataset.result = JSON.stringify({tip: details, up, down: read()});
</script>"""


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium")
def test_in_a_browser_a_point_shows_its_details_and_the_table_sorts(tmp_path: Path) -> None:
    page = html_report(tmp_path).replace("</body>", SELFTEST + "</body>")
    (tmp_path / "selftest.html").write_text(page)
    done = subprocess.run(
        [
            "chromium",
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--dump-dom",
            (tmp_path / "selftest.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(
        re.search(r'data-result="(.*?)"', done.stdout)[1]
        .replace("&quot;", '"')
        .replace("&amp;", "&")
    )
    assert result["tip"].startswith("configuration")
    assert "schedule" in result["tip"]
    assert "density" in result["tip"]
    accuracies = [float(a) for a in result["up"]]
    assert len(accuracies) == 10
    assert accuracies == sorted(accuracies)
    assert result["down"] == result["up"][::-1]


def test_training_curves_draw_each_run_in_its_configuration_colour(tmp_path: Path) -> None:
    runs = [r for r in quick_sweep() if r.label in ("fp32", "hbfp4", "hbfp3")]
    fig = curves.figure(runs, target=0.9)
    assert [ax.get_title() for ax in fig.axes] == [
        "validation accuracy (%)",
        "test accuracy (%)",
        "training loss",
        "test loss",
    ]
    for ax in fig.axes:
        drawn = [line for line in ax.get_lines() if (line.get_gid() or "").startswith("run-")]
        assert len(drawn) == len(runs)
        for line, r in zip(drawn, runs, strict=True):
            assert to_hex(line.get_color()) == styles.colour(r.label)
            assert list(line.get_xdata()) == [1, 2, 3]
    validation = fig.axes[0].get_lines()[0].get_ydata()
    assert validation[-1] == pytest.approx(97.2)
    accuracy = fig.axes[1].get_lines()[0].get_ydata()
    assert accuracy[-1] == pytest.approx(97.5)
    assert fig.axes[2].get_yscale() == "log"  # the fake losses fall by decades
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[:2] == ["fp32 (seed 0)", "fp32 (seed 1)"]
    assert legend[-1] == "target (90%)"
    assert fig.get_suptitle() == "paper: cnn on mnist-5k, 3 epochs, 2 seeds"
    without = [run(1, "fp32", 0.975, 1.0, held=False)]  # stored before validation splits
    assert curves.figure(without).axes[0].get_title() == "test accuracy (%)"
    one_seed = [r for r in runs if r.seed == 0]
    assert [t.get_text() for t in curves.figure(one_seed).legends[0].get_texts()] == [
        "fp32",
        "hbfp4",
        "hbfp3",
    ]


def test_training_curves_as_html_have_details_per_curve(tmp_path: Path) -> None:
    path = tmp_path / "curves.html"
    runs = [r for r in quick_sweep() if r.label in ("fp32", "hbfp4")]
    curves.save(path, runs)
    page = path.read_text()
    tips = json.loads(re.search(r"id='tips'>(.*?)</script>", page, re.S)[1])
    assert set(tips) == set(re.findall(r'<g id="(run-\d+-\w+)"', page))
    assert tips["run-1-test_acc"]["run"] == "1 (fp32 (seed 0))"
    assert tips["run-1-test_acc"]["final test accuracy"] == "97.50%"
    assert "<td data-sort='500.0'>500</td>" in page  # samples per second
