"""Sweep files: validation, expansion into runs, and run identities."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from hbfp_dse.errors import UserError
from hbfp_dse.experiments.sweepfile import TooManyRunsError, expand, load_sweep, parse_sweep

BASE = "base: {model: mlp, dataset: mnist-5k, epochs: 3, device: cpu}\n"

SWEEP = (
    "name: spec-test\n" + BASE + "baselines: [fp32, bf16, booster]\n"
    "grid:\n"
    "  mantissa_bits: [3, 4]\n"
    "  block_size: [16, 64]\n"
    "  layers: [all, boost_ends]\n"
    "seeds: [0, 1, 2]\n"
)


def test_expansion_counts_baselines_and_the_grid_product_per_seed() -> None:
    runs = expand(parse_sweep(SWEEP))
    assert len(runs) == (3 + 2 * 2 * 2) * 3
    assert [r.kind for r in runs] == ["baseline"] * 9 + ["grid"] * 24  # baselines first
    assert {r.config.seed for r in runs} == {0, 1, 2}
    assert len({r.run_hash for r in runs}) == len(runs)
    assert len({r.config_id for r in runs}) == 3 + 8
    labels = {r.label for r in runs}
    assert {"fp32", "bf16", "booster", "hbfp3_b16", "hbfp4", "hbfp4 boost-ends:hbfp6"} <= labels


def test_every_grid_axis_multiplies() -> None:
    spec = parse_sweep(
        "name: axes\n" + BASE + "grid:\n"
        "  mantissa_bits: [4]\n"
        "  block_size: [16, 64]\n"
        "  scaling: [{levels: 1}, {levels: 2, sub_block: 8}]\n"
        "  layers: [all, boost_ends, fp32_ends]\n"
        "  boost_last_epochs: [0, 1]\n"
        "  rounding: [nearest, stochastic, {forward: nearest, backward: stochastic}]\n"
    )
    runs = expand(spec)
    assert len(runs) == 2 * 2 * 3 * 2 * 3
    two_level = [r for r in runs if "_s8" in r.label]
    assert len(two_level) == len(runs) // 2
    stochastic = [r for r in runs if r.config.backward_rounding == "stochastic"]
    assert len(stochastic) == 2 * len(runs) // 3


def test_duplicate_configurations_are_kept_once() -> None:
    spec = parse_sweep(
        "name: dups\n" + BASE + "baselines: [hbfp8, hbfp8, {schedule: {format: hbfp8_b64}}]\n"
        "grid: {mantissa_bits: [4, 4], block_size: [64, 64]}\n"
        "seeds: [0, 1]\n"
    )
    runs = expand(spec)
    assert [(r.label, r.config.seed) for r in runs] == [
        ("hbfp8", 0),
        ("hbfp8", 1),
        ("hbfp4", 0),
        ("hbfp4", 1),
    ]


def test_a_uniform_grid_point_is_the_same_run_as_its_baseline() -> None:
    spec = parse_sweep(
        "name: same\n" + BASE + "baselines: [hbfp4]\n"
        "grid: {mantissa_bits: [4], block_size: [64], layers: [all, boost_ends]}\n"
    )
    runs = expand(spec)
    assert [(r.label, r.kind) for r in runs] == [
        ("hbfp4", "baseline"),
        ("hbfp4 boost-ends:hbfp6", "grid"),
    ]


def test_a_baseline_overrides_rounding_and_blocking_for_itself_only() -> None:
    spec = parse_sweep(
        "name: overrides\n" + BASE + "baselines:\n"
        "  - hbfp4\n"
        "  - {schedule: hbfp4, rounding: stochastic}\n"
        "  - {schedule: hbfp4, rounding: {forward: nearest, backward: stochastic}}\n"
        "  - {schedule: booster, blocking: emulator}\n"
        "  - {schedule: hbfp4, blocking: reduction, rounding: nearest}\n"
    )
    runs = expand(spec)
    settings = [
        (r.label, r.config.forward_rounding, r.config.backward_rounding, r.config.blocking)
        for r in runs
    ]
    assert settings == [
        ("hbfp4", "nearest", "nearest", "reduction"),
        ("hbfp4 stochastic", "stochastic", "stochastic", "reduction"),
        ("hbfp4 nearest/stochastic", "nearest", "stochastic", "reduction"),
        ("booster emulator", "nearest", "nearest", "emulator"),
    ]  # the last equals the first: the base's settings written out are the same run


def test_run_hash_is_stable_and_ignores_key_order_and_the_device_index() -> None:
    first = [r.run_hash for r in expand(parse_sweep(SWEEP))]
    assert first == [r.run_hash for r in expand(parse_sweep(SWEEP))]
    assert all(re.fullmatch(r"[0-9a-f]{16}", h) for h in first)
    reordered = (
        "seeds: [0, 1, 2]\n"
        "grid:\n"
        "  layers: [all, boost_ends]\n"
        "  block_size: [16, 64]\n"
        "  mantissa_bits: [3, 4]\n"
        "baselines: [fp32, bf16, booster]\n"
        "base: {device: cpu, epochs: 3, dataset: mnist-5k, model: mlp}\n"
        "name: another-name\n"  # the sweep's name is not part of a run's identity
    )
    assert [r.run_hash for r in expand(parse_sweep(reordered))] == first
    cuda = [r.run_hash for r in expand(parse_sweep(SWEEP.replace("device: cpu", "device: cuda")))]
    assert set(cuda).isdisjoint(first)  # the kind of device counts, its index does not
    cuda1 = SWEEP.replace("device: cpu", "device: cuda:1")
    assert [r.run_hash for r in expand(parse_sweep(cuda1))] == cuda
    # ... but any setting that changes training changes the identity.
    longer = SWEEP.replace("epochs: 3", "epochs: 4")
    assert set(first).isdisjoint(r.run_hash for r in expand(parse_sweep(longer)))


def test_config_id_is_shared_across_seeds_only() -> None:
    runs = expand(parse_sweep(SWEEP))
    by_config: dict[str, list] = {}
    for run in runs:
        by_config.setdefault(run.config_id, []).append(run)
    assert len(by_config) == 11
    for group in by_config.values():
        assert sorted(r.config.seed for r in group) == [0, 1, 2]
        assert len({r.label for r in group}) == 1
        assert len({r.run_hash for r in group}) == 3


def test_a_sweep_file_without_a_name_takes_the_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "my-sweep.yaml"
    path.write_text(BASE + "baselines: [fp32]\n")
    spec, text = load_sweep(path)
    assert spec.name == "my-sweep"
    assert text == path.read_text()


def test_the_schema_example_in_the_sweep_readme_is_a_valid_sweep() -> None:
    readme = (Path(__file__).parent.parent / "sweeps" / "README.md").read_text()
    example = re.search(r"```yaml\n(.*?)```", readme, re.DOTALL)
    assert example is not None
    spec = parse_sweep(example.group(1), "sweeps/README.md")
    assert spec.search is not None
    assert len(expand(spec)) == spec.run_count == (5 + 2 * 2 * 2 * 3 * 2 * 3) * 3


def test_an_empty_sweep_file_says_what_it_lacks(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    with pytest.raises(UserError, match="the sweep has no runs: give 'baselines'"):
        load_sweep(path)


BAD_SPECS = {
    "unknown top-level key": (
        BASE + "baselines: [fp32]\ngrdi: {mantissa_bits: [4]}\n",
        ["grdi: unknown key"],
    ),
    "unknown grid key": (BASE + "grid: {mantisa_bits: [4]}\n", ["grid.mantisa_bits: unknown key"]),
    "unknown base key": (
        "base: {model: mlp, optimizer: {lrr: 0.1}}\nbaselines: [fp32]\n",
        ["base.optimizer.lrr: unknown key"],
    ),
    "mantissa out of range": (
        BASE + "grid: {mantissa_bits: [4, 1]}\n",
        ["grid.mantissa_bits", "mantissa width 1 is outside 2..16"],
    ),
    "block size out of range": (
        BASE + "grid: {mantissa_bits: [4], block_size: [0]}\n",
        ["grid.block_size", "block size 0"],
    ),
    "epochs out of range": ("base: {epochs: 0}\nbaselines: [fp32]\n", ["base.epochs"]),
    "negative boost": (
        BASE + "grid: {mantissa_bits: [4], boost_last_epochs: [-1]}\n",
        ["grid.boost_last_epochs"],
    ),
    "unknown baseline format": (
        BASE + "baselines: [fp32, hbfp99x]\n",
        ["baselines.1.schedule", "unknown format 'hbfp99x'"],
    ),
    "unknown rule format": (
        BASE + "baselines: [{schedule: {rules: [{format: bogus}]}}]\n",
        ["baselines.0.schedule.rules.0.format", "unknown format 'bogus'"],
    ),
    "unknown boost format": (
        BASE + "grid: {mantissa_bits: [4], boost_format: nope}\n",
        ["grid.boost_format", "unknown format 'nope'"],
    ),
    "boost longer than training": (
        BASE + "grid: {mantissa_bits: [4], boost_last_epochs: [0, 5]}\n",
        ["grid.boost_last_epochs", "5 is more than the 3 epochs"],
    ),
    "two levels without sub_block": (
        BASE + "grid: {mantissa_bits: [4], scaling: [{levels: 1}, {levels: 2}]}\n",
        ["grid.scaling.1", "sub_block"],
    ),
    "three levels": (
        BASE + "grid: {mantissa_bits: [4], scaling: [{levels: 3, sub_block: 4}]}\n",
        ["grid.scaling.0.levels"],
    ),
    "unknown baseline blocking": (
        BASE + "baselines: [{schedule: hbfp4, blocking: columns}]\n",
        ["baselines.0.blocking"],
    ),
    "repeated seeds": (BASE + "baselines: [fp32]\nseeds: [1, 1]\n", ["seeds", "distinct"]),
    "no runs": (BASE, ["the sweep has no runs"]),
    "not a mapping": ("- fp32\n- bf16\n", ["expected a mapping"]),
}


@pytest.mark.parametrize(("text", "fragments"), BAD_SPECS.values(), ids=BAD_SPECS.keys())
def test_bad_sweep_files_name_the_file_and_the_key(
    tmp_path: Path, text: str, fragments: list[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        load_sweep(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    for fragment in fragments:
        assert fragment in message


def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\n" + BASE + "baselines: [fp32, bf16\nseeds: [0]\n")
    with pytest.raises(UserError, match=r"YAML syntax error") as info:
        load_sweep(path)
    match = re.match(rf"{re.escape(str(path))}:(\d+):(\d+): ", str(info.value))
    assert match is not None, info.value
    assert int(match[1]) in (3, 4)  # the unclosed list, or where the parser noticed it


def test_a_missing_sweep_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        load_sweep(tmp_path / "nope.yaml")


def test_parse_sweep_names_its_source() -> None:
    with pytest.raises(UserError, match=r"^inline: invalid configuration:\n  grdi: unknown key"):
        parse_sweep("name: x\ngrdi: 1\n", "inline")


def test_loading_a_sweep_file_imports_neither_optuna_nor_models_nor_data() -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from hbfp_dse.experiments.sweepfile import expand, load_sweep\n"
        "spec, _ = load_sweep(Path('sweeps/quick.yaml'))\n"
        "assert spec.search is not None and expand(spec)\n"
        "heavy = ('optuna', 'torchvision', 'hbfp_dse.training.models', 'hbfp_dse.training.data')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


HUGE_GRID = (
    "name: huge\n" + BASE + "grid:\n"
    "  mantissa_bits: [2, 3, 4, 5, 6, 7, 8, 9, 10, 11]\n"
    "  block_size: [8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]\n"
    "  layers: [all, boost_ends, fp32_ends]\n"
    "  boost_last_epochs: [0, 1, 2]\n"
    "  rounding: [nearest, stochastic, {forward: nearest, backward: stochastic}]\n"
    "  scaling: [{levels: 1}, {levels: 2, sub_block: 2}, {levels: 2, sub_block: 4}]\n"
    f"seeds: {list(range(123))}\n"
)


def test_a_grid_too_large_is_counted_and_refused_without_expanding_it() -> None:
    spec = parse_sweep(HUGE_GRID)
    assert spec.run_count == 10 * 10 * 3 * 3 * 3 * 3 * 123 == 996_300
    with pytest.raises(TooManyRunsError, match="996,300 runs, more than the limit of 10,000"):
        expand(spec)
    small = parse_sweep("name: s\n" + BASE + "grid: {mantissa_bits: [3, 4]}\nseeds: [0, 1]\n")
    with pytest.raises(TooManyRunsError):
        expand(small, max_runs=3)
    assert len(expand(small, max_runs=4)) == 4


def test_seeds_fit_the_stores_integer_columns() -> None:
    with pytest.raises(UserError, match=r"seeds\.0"):
        parse_sweep("name: s\nbaselines: [fp32]\nseeds: [2147483648]\n")
    with pytest.raises(UserError, match=r"base\.seed"):
        parse_sweep("name: s\nbaselines: [fp32]\nbase: {seed: -1}\n")


def test_yaml_nested_too_deeply_is_one_clear_error() -> None:
    with pytest.raises(UserError, match="nested too deeply"):
        parse_sweep("a: " + "[" * 20_000 + "]" * 20_000 + "\n", "deep.yaml")


def test_a_baseline_is_labelled_by_what_it_overrides_in_its_base() -> None:
    spec = parse_sweep(
        "name: labels\n"
        + BASE.replace("}", ", blocking: emulator}")
        + "baselines:\n  - hbfp4\n  - {schedule: hbfp4, blocking: reduction}\n"
        + "  - {schedule: hbfp4, blocking: emulator, rounding: nearest}\n"
    )
    assert sorted({run.label for run in expand(spec)}) == ["hbfp4", "hbfp4 reduction"]


def test_two_configurations_under_one_label_are_refused() -> None:
    with pytest.raises(UserError, match="both labelled 'mine'"):
        parse_sweep(
            "name: labels\n" + BASE + "baselines:\n  - {label: mine, schedule: hbfp4}\n"
            "  - {label: mine, schedule: hbfp6}\n",
            "sweep.yaml",
        )
