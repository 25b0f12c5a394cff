"""``hbfp-dse formats`` and ``hbfp-dse cost`` through the command line (typer's CliRunner)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hbfp_dse.cli.app import app
from hbfp_dse.cost import GEMM_ROLES, pe_area

BUILTIN = resources.files("hbfp_dse").joinpath("data", "unit_areas_um2.csv").read_text("utf-8")
FORMAT_KEYS = {
    "name",
    "bits_per_element",
    "scaling_levels",
    "block_size",
    "pe_area_um2",
    "density_vs_fp32",
    "density_vs_bf16",
}

# CIFAR ResNet-20 (option A shortcuts, no shortcut convs), forward MACs per sample.
CONV1 = 32 * 32 * 16 * 3 * 9  # the stem: no data gradient
FULL = 32 * 32 * 16 * 16 * 9  # 16 convs of this size (same in every stage)
DOWN = 16 * 16 * 32 * 16 * 9  # the first conv of stages 2 and 3
FC = 64 * 10
INNER = 16 * FULL + 2 * DOWN  # layers that get all three GEMMs and the low format
EPOCH = 2 * CONV1 + 3 * INNER + 3 * FC  # 121,210,752 MACs per sample and epoch


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, *args: str):
    return runner.invoke(app, list(args))


def ok_json(runner: CliRunner, *args: str):
    result = invoke(runner, *args, "--format", "json")
    assert result.exit_code == 0, result.stderr or result.output
    return json.loads(result.stdout)


def assert_user_error(result, *fragments: str) -> None:
    """Exit code 2, one ``error:`` message on stderr naming the problem, no traceback."""
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert sum(line.startswith("error:") for line in result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for fragment in fragments:
        assert fragment in result.stderr


def scaled_table(tmp_path: Path, row: str, factor: float) -> Path:
    """The built-in area table with the area of ``row`` (``unit,operand_type``) scaled."""
    lines = []
    hits = 0
    for line in BUILTIN.splitlines():
        if line.startswith(row + ","):
            unit, operand, area = line.split(",")
            line = f"{unit},{operand},{float(area) * factor}"
            hits += 1
        lines.append(line)
    assert hits == 1
    path = tmp_path / "areas.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- formats -------------------------------------------------------------------------------


def test_formats_json_catalogue_has_the_documented_keys(runner):
    rows = ok_json(runner, "formats")
    assert isinstance(rows, list)
    assert len(rows) > 10
    for row in rows:
        assert isinstance(row, dict)
        assert row.keys() >= FORMAT_KEYS
        assert row["pe_area_um2"] > 0
        assert row["density_vs_fp32"] > 0
        assert row["density_vs_bf16"] > 0
    by_name = {row["name"]: row for row in rows}
    assert {"fp32", "bf16", "hbfp4", "hbfp4_b256", "mxfp6_e2m3", "mxint8"} <= by_name.keys()
    assert by_name["fp32"]["density_vs_fp32"] == 1.0
    assert by_name["bf16"]["density_vs_bf16"] == 1.0
    assert by_name["hbfp4_s16"]["scaling_levels"] == 2
    assert by_name["hbfp4"]["block_size"] == 64
    assert by_name["fp32"]["block_size"] is None


def test_formats_given_names_only_in_that_order(runner):
    rows = ok_json(runner, "formats", "hbfp5_b144", "mxfp6_e2m3")
    assert [row["name"] for row in rows] == ["hbfp5_b144", "mxfp6_e2m3"]
    hbfp5, mxfp6 = rows
    assert hbfp5["bits_per_element"] == pytest.approx(5 + 8 / 144, abs=1e-4)
    assert hbfp5["block_size"] == 144
    assert hbfp5["scaling_levels"] == 1
    assert mxfp6["bits_per_element"] == pytest.approx(6 + 8 / 32, abs=1e-4)
    assert mxfp6["block_size"] == 32
    # Reversed on the command line, reversed in the output.
    rows = ok_json(runner, "formats", "mxfp6_e2m3", "hbfp5_b144")
    assert [row["name"] for row in rows] == ["mxfp6_e2m3", "hbfp5_b144"]


# Published per-PE areas on 16x16 blocks, density vs FP32 = 1494.3 / area to 0.1x
# (docs/cost-model.md).
PUBLISHED = [
    ("fp32", 1494.3, 1.0),
    ("bf16", 309.0, 4.8),
    ("hbfp8_b256", 180.4, 8.3),
    ("hbfp6_b256", 118.0, 12.7),
    ("hbfp4_b256", 70.1, 21.3),
]


def test_formats_reproduce_the_published_figures(runner):
    rows = ok_json(runner, "formats", *(name for name, _, _ in PUBLISHED))
    for row, (name, area, dens) in zip(rows, PUBLISHED, strict=True):
        assert row["name"] == name
        assert row["pe_area_um2"] == pytest.approx(area, rel=0.005), name
        assert round(row["density_vs_fp32"], 1) == dens, name
    hbfp4 = rows[-1]
    assert hbfp4["density_vs_fp32"] == pytest.approx(21.3, rel=0.005)
    assert hbfp4["density_vs_bf16"] == pytest.approx(309.0 / 70.1, rel=0.005)  # ~4.4x


def test_formats_table_renders(runner):
    result = invoke(runner, "formats", "hbfp4_b256", "bf16")
    assert result.exit_code == 0, result.stderr
    assert "hbfp4_b256" in result.stdout
    assert "bf16" in result.stdout
    assert "21.3" in result.stdout
    assert "hbfp6" not in result.stdout


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("nope", "unknown format 'nope'"), ("hbfp1", "hbfp1"), ("hbfp4_b0", "hbfp4_b0")],
)
def test_formats_bad_name_is_one_clear_error(runner, name, fragment):
    result = invoke(runner, "formats", "hbfp4", name)
    assert_user_error(result, fragment)


def test_formats_user_area_table_changes_densities(runner, tmp_path):
    builtin = {row["name"]: row for row in ok_json(runner, "formats", "hbfp4_b256", "hbfp6")}
    # Twice the 4-bit integer multiplier: only formats that use one get denser or sparser.
    table = scaled_table(tmp_path, "multiply,int4", 2.0)
    user = {
        row["name"]: row
        for row in ok_json(runner, "formats", "hbfp4_b256", "hbfp6", "--areas", str(table))
    }
    mul4 = 30.861
    assert user["hbfp4_b256"]["pe_area_um2"] == pytest.approx(
        builtin["hbfp4_b256"]["pe_area_um2"] + mul4, abs=0.011
    )
    assert user["hbfp4_b256"]["density_vs_fp32"] < builtin["hbfp4_b256"]["density_vs_fp32"]
    assert user["hbfp4_b256"]["density_vs_fp32"] == pytest.approx(
        1494.3285 / (70.08 + mul4), rel=1e-3
    )
    # The 6-bit PE does not use that row.
    assert user["hbfp6"] == builtin["hbfp6"]


def test_formats_user_area_table_changes_the_fp32_reference(runner, tmp_path):
    before = ok_json(runner, "formats", "hbfp4_b256")[0]
    table = scaled_table(tmp_path, "multiply,fp_e8m23", 1.5)
    after = ok_json(runner, "formats", "hbfp4_b256", "--areas", str(table))[0]
    assert after["pe_area_um2"] == before["pe_area_um2"]
    assert after["density_vs_fp32"] == pytest.approx((485.271 + 1.5 * 1009.0575) / 70.08, rel=1e-3)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "cannot read the area table"),
        ("", "empty area table"),
        ("unit,area\nadd,int4,7.5\n", "expected the header"),
        ("unit,operand_type,area_um2\nadd,int4,abc\n", "line 2: area 'abc' is not a number"),
        ("unit,operand_type,area_um2\nadd,int4,-1\n", "line 2"),
        ("unit,operand_type,area_um2\nadd,int4\n", "line 2: expected 3 fields"),
        ("unit,operand_type,area_um2\ndivide,int4,3\n", "unit 'divide'"),
        ("unit,operand_type,area_um2\nadd,int4,3\n", "fit"),  # too few rows to fit anything
    ],
)
@pytest.mark.parametrize("command", ["formats", "cost"])
def test_missing_or_malformed_area_table_is_a_clear_error(
    runner, tmp_path, command, content, fragment
):
    path = tmp_path / "areas.csv"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    result = invoke(runner, command, "--areas", str(path))
    assert_user_error(result, str(path), fragment)


# --- cost ----------------------------------------------------------------------------------


def booster_4bit_share(epochs: int) -> float:
    # Booster: hbfp6 in conv1 and fc every epoch and everywhere in the last epoch.
    return (epochs - 1) * 3 * INNER / (epochs * EPOCH)


def check_resnet20_booster(data: dict, epochs: int) -> None:
    assert data["model"] == "resnet20"
    assert data["epochs"] == epochs
    assert data["macs_per_sample"] == epochs * EPOCH
    share = data["mac_share"]
    assert set(share) == {"4-bit", "6-bit"}
    assert 0 < share["4-bit"] < 1
    assert share["4-bit"] == pytest.approx(booster_4bit_share(epochs), rel=1e-12)
    assert share["4-bit"] + share["6-bit"] == pytest.approx(1.0, rel=1e-12)
    a32, a4, a6 = (pe_area(name) for name in ("fp32", "hbfp4", "hbfp6"))
    at4 = share["4-bit"] * data["macs_per_sample"]
    at6 = share["6-bit"] * data["macs_per_sample"]
    density = data["macs_per_sample"] * a32 / (at4 * a4 + at6 * a6)
    assert data["density_vs_fp32"] == pytest.approx(density, rel=1e-9)
    assert 1 < data["density_vs_bf16"] < data["density_vs_fp32"]

    layers = {layer["name"]: layer for layer in data["layers"]}
    assert len(layers) == 20
    names = list(layers)
    assert (names[0], names[-1]) == ("conv1", "fc")
    assert layers["conv1"]["macs_per_sample"] == epochs * 2 * CONV1
    assert layers["layer1.0.conv1"]["macs_per_sample"] == epochs * 3 * FULL
    assert layers["layer2.0.conv1"]["macs_per_sample"] == epochs * 3 * DOWN
    assert layers["fc"]["macs_per_sample"] == epochs * 3 * FC
    assert layers["conv1"]["formats"] == ["hbfp6"]
    assert layers["fc"]["formats"] == ["hbfp6"]
    assert layers["layer3.2.conv2"]["formats"] == ["hbfp4", "hbfp6"]
    assert layers["conv1"]["density_vs_fp32"] == pytest.approx(a32 / a6, rel=1e-9)
    assert sum(layer["mac_fraction"] for layer in data["layers"]) == pytest.approx(1, rel=1e-12)
    assert sum(layer["macs_per_sample"] for layer in data["layers"]) == data["macs_per_sample"]


def test_cost_resnet20_booster_from_flags(runner):
    data = ok_json(
        runner, "cost", "--model", "resnet20", "--dataset", "cifar10",
        "--epochs", "160", "--schedule", "booster",
    )  # fmt: skip
    check_resnet20_booster(data, 160)
    assert data["dataset"] == "cifar10"
    # The published Booster: more than 98% of the MACs at 4 bits on ResNet-20.
    assert data["mac_share"]["4-bit"] > 0.98


def test_cost_from_a_yaml_file_with_flag_overrides(runner, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        "model: resnet20\n"
        "dataset: cifar10\n"
        "epochs: 160\n"
        "schedule:\n"
        "  booster: {low: hbfp4, high: hbfp6, last_epochs: 1}\n",
        encoding="utf-8",
    )
    check_resnet20_booster(ok_json(runner, "cost", str(config)), 160)
    check_resnet20_booster(ok_json(runner, "cost", str(config), "--epochs", "10"), 10)


def test_cost_uniform_schedule_has_the_format_density(runner):
    data = ok_json(runner, "cost", "--model", "cnn", "--epochs", "3", "--schedule", "hbfp4_b256")
    assert data["mac_share"] == {"4-bit": 1.0}
    assert data["density_vs_fp32"] == pytest.approx(pe_area("fp32") / pe_area("hbfp4_b256"))
    # The default schedule is FP32.
    data = ok_json(runner, "cost", "--model", "cnn")
    assert data["mac_share"] == {"fp32": 1.0}
    assert data["density_vs_fp32"] == pytest.approx(1.0)


def test_cost_user_area_table_changes_the_density(runner, tmp_path):
    args = ("cost", "--model", "cnn", "--epochs", "2", "--schedule", "hbfp4")
    builtin = ok_json(runner, *args)
    table = scaled_table(tmp_path, "multiply,int4", 2.0)
    user = ok_json(runner, *args, "--areas", str(table))
    assert user["density_vs_fp32"] < builtin["density_vs_fp32"]
    assert user["mac_share"] == builtin["mac_share"]
    assert user["macs_per_sample"] == builtin["macs_per_sample"]


def test_cost_table_output_renders(runner):
    result = invoke(
        runner, "cost", "--model", "resnet20", "--dataset", "cifar10",
        "--epochs", "160", "--schedule", "booster",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "resnet20" in out
    assert "FP32" in out
    assert "4-bit 98.65%" in out
    assert "6-bit 1.35%" in out
    for name in ("conv1", "layer2.0.conv1", "layer3.2.conv2", "fc"):
        assert name in out
    assert "hbfp4, hbfp6" in out


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--schedule", "nope"), "unknown format 'nope'"),
        (("--schedule", "booster:hbfp4:nope"), "unknown format 'nope'"),
        (("--model", "nope"), "unknown model 'nope'"),
        (("--dataset", "nope"), "unknown dataset 'nope'"),
        (("--epochs", "0"), "epochs"),
        (("missing.yaml",), "missing.yaml: no such file"),
    ],
)
def test_cost_bad_input_is_one_clear_error(runner, args, fragment):
    assert_user_error(invoke(runner, "cost", *args), fragment)


def test_cost_bad_yaml_names_the_file_and_key(runner, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [\n", encoding="utf-8")
    assert_user_error(invoke(runner, "cost", str(bad)), "bad.yaml:2", "YAML syntax error")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("model: cnn\nlayers: 3\n", encoding="utf-8")
    assert_user_error(invoke(runner, "cost", str(unknown)), "layers: unknown key")


def test_error_message_keeps_long_paths_and_brackets_intact(runner, tmp_path):
    # Neither wrapped at 80 columns nor read as rich markup.
    path = tmp_path / ("deep-" * 12) / "runs[a]" / "areas.csv"
    result = invoke(runner, "formats", "--areas", str(path))
    assert_user_error(result, str(path))
    assert result.stderr.count("\n") == 1


def test_cost_counts_the_attention_matmuls_and_type_selects_attention(tmp_path: Path) -> None:
    file = tmp_path / "vit.yaml"
    file.write_text(
        "model: vit\ndataset: cifar10\nepochs: 2\n"
        "schedule: [{format: hbfp4}, {format: hbfp8, layers: ['type:multiheadattention']}]\n"
    )
    result = CliRunner().invoke(app, ["cost", str(file), "--format", "json"])
    assert result.exit_code == 0, result.output
    layers = json.loads(result.stdout)["layers"]
    attention = [layer for layer in layers if "attention" in layer]
    assert len(attention) == 4  # one per encoder block
    for layer in attention:
        # 8 x 8 patches and the class token; 4 heads of 16.
        shape = layer["attention"]
        assert (shape["heads"], shape["head_dim"]) == (4, 16)
        assert (shape["queries"], shape["keys"]) == (65, 65)
        matmul = 4 * 65 * 65 * 16
        assert shape["matmul_macs_per_sample"] == dict.fromkeys(GEMM_ROLES, matmul)
        assert layer["formats"] == ["hbfp8"]
        # Projections 4 x 65 x 64 x 64 and two matmuls, three GEMMs each, two epochs.
        assert layer["macs_per_sample"] == 2 * 3 * (4 * 65 * 64 * 64 + 2 * 4 * 65 * 65 * 16)
    assert {fmt for layer in layers if "attention" not in layer for fmt in layer["formats"]} == {
        "hbfp4"
    }
