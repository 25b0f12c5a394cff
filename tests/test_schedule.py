"""Schedules: (layer, epoch) -> format, presets, and switching formats in place."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from hbfp_dse.emulation import (
    LayerInfo,
    Quantization,
    QuantSpec,
    Rule,
    Schedule,
    apply_formats,
    convert,
    layer_infos,
    quantized_layers,
)
from hbfp_dse.errors import UserError
from hbfp_dse.experiments.sweepfile import Baseline
from hbfp_dse.formats import parse_format
from hbfp_dse.training.config import OptimizerConfig, ScheduleConfig, TrainConfig
from hbfp_dse.training.optim import build_optimizer


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.layer1 = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.layer2 = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.mix = nn.Conv1d(4, 4, 1)
        self.fc = nn.Linear(4 * 36, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.bn(self.stem(x))))
        x = self.mix(x.flatten(2)).flatten(1)
        return self.fc(x)


NAMES = ["stem", "layer1.0", "layer2.0", "mix", "fc"]
LAYERS = [
    LayerInfo("stem", "Conv2d"),
    LayerInfo("layer1.0", "Conv2d"),
    LayerInfo("layer2.0", "Conv2d"),
    LayerInfo("mix", "Conv1d"),
    LayerInfo("fc", "Linear"),
]


def names(table: list[dict], fmt: str, epoch: int = 0) -> list[str]:
    """The layers that have ``fmt`` in ``epoch``."""
    return [name for name, f in table[epoch].items() if f.name == fmt]


def epochs_with(table: list[dict], fmt: str, layer: str = "stem") -> list[int]:
    return [epoch for epoch, formats in enumerate(table) if formats[layer].name == fmt]


def test_layer_infos_list_quantized_layers_in_module_order_with_their_torch_class() -> None:
    assert layer_infos(convert(Net())) == LAYERS


@pytest.mark.parametrize(
    ("selector", "picked"),
    [
        ("first", ["stem"]),
        ("last", ["fc"]),
        (2, ["layer2.0"]),
        ("2", ["layer2.0"]),
        (-1, ["fc"]),
        ("-2", ["mix"]),
        ("layer*", ["layer1.0", "layer2.0"]),
        ("layer?.0", ["layer1.0", "layer2.0"]),
        ("fc", ["fc"]),
        ("type:conv", ["stem", "layer1.0", "layer2.0", "mix"]),
        ("type:Conv2d", ["stem", "layer1.0", "layer2.0"]),
        ("type:conv1d", ["mix"]),
        ("type:linear", ["fc"]),
    ],
)
def test_layer_selectors(selector: str | int, picked: list[str]) -> None:
    table = Schedule((Rule("hbfp8", layers=(selector,)),)).resolve(LAYERS, 2)
    assert names(table, "hbfp8") == picked
    assert names(table, "fp32") == [n for n in NAMES if n not in picked]  # unpicked stay FP32
    assert table[0] == table[1]


def test_several_layer_selectors_in_one_rule_add_up() -> None:
    table = Schedule((Rule("hbfp8", layers=("first", "type:linear", "first")),)).resolve(LAYERS, 1)
    assert names(table, "hbfp8") == ["stem", "fc"]


@pytest.mark.parametrize(
    ("selector", "picked"),
    [
        (0, [0]),
        ("3", [3]),
        (-1, [4]),
        ("-2", [3]),
        ("1:3", [1, 2]),
        ("-2:", [3, 4]),
        (":2", [0, 1]),
        ("3:-1", [3]),
        ("2:", [2, 3, 4]),
    ],
)
def test_epoch_selectors(selector: str | int, picked: list[int]) -> None:
    table = Schedule((Rule("hbfp8", epochs=(selector,)),)).resolve(LAYERS, 5)
    for layer in NAMES:
        assert epochs_with(table, "hbfp8", layer) == picked


def test_rules_select_layers_and_epochs_together() -> None:
    table = Schedule((Rule("hbfp6", layers=("layer*",), epochs=("-1",)),)).resolve(LAYERS, 3)
    assert names(table, "hbfp6", 2) == ["layer1.0", "layer2.0"]
    assert names(table, "hbfp6", 1) == []


def test_later_rules_win() -> None:
    low_then_high = Schedule((Rule("hbfp4"), Rule("hbfp8", layers=("first",))))
    high_then_low = Schedule((Rule("hbfp8", layers=("first",)), Rule("hbfp4")))
    assert names(low_then_high.resolve(LAYERS, 1), "hbfp8") == ["stem"]
    assert names(high_then_low.resolve(LAYERS, 1), "hbfp4") == NAMES


def test_uniform_preset_is_one_format_everywhere() -> None:
    table = Schedule.uniform("hbfp6_b32").resolve(LAYERS, 3)
    assert all(f == parse_format("hbfp6_b32") for epoch in table for f in epoch.values())


def test_booster_defaults_hbfp4_hbfp6_first_last_layers_and_last_epoch() -> None:
    table = Schedule.booster().resolve(LAYERS, 4)
    for epoch in range(3):
        assert names(table, "hbfp6", epoch) == ["stem", "fc"]
        assert names(table, "hbfp4", epoch) == ["layer1.0", "layer2.0", "mix"]
    assert names(table, "hbfp6", 3) == NAMES


def test_booster_with_other_formats_and_last_epochs() -> None:
    table = Schedule.booster("hbfp3", "hbfp8_b32", last_epochs=2).resolve(LAYERS, 5)
    assert epochs_with(table, "hbfp8_b32", "mix") == [3, 4]
    assert epochs_with(table, "hbfp3", "mix") == [0, 1, 2]
    assert epochs_with(table, "hbfp8_b32", "stem") == [0, 1, 2, 3, 4]
    no_high_epoch = Schedule.booster(last_epochs=0).resolve(LAYERS, 3)
    assert epochs_with(no_high_epoch, "hbfp4", "mix") == [0, 1, 2]


def test_schedule_config_shorthands_build_the_presets() -> None:
    assert ScheduleConfig.model_validate("hbfp8").build() == Schedule.uniform("hbfp8")
    booster = ScheduleConfig.model_validate({"booster": {"last_epochs": 2}}).build()
    assert booster == Schedule.booster(last_epochs=2)
    rules = ScheduleConfig.model_validate(
        [{"format": "hbfp4"}, {"format": "HBFP6", "layers": ["first", -1], "epochs": ["-1"]}]
    ).build()
    assert rules == Schedule((Rule("hbfp4"), Rule("hbfp6", ("first", -1), ("-1",))))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Schedule((Rule("hbfp8", layers=("nothing*",)),)), "matches none"),
        (lambda: Schedule((Rule("hbfp8", layers=(5,)),)), "matches none"),
        (lambda: Schedule((Rule("hbfp8", layers=("-6",)),)), "matches none"),
        (lambda: Schedule((Rule("hbfp8", layers=("type:lstm",)),)), "matches none"),
        (lambda: Schedule((Rule("hbfp8", layers=("type:",)),)), "needs a kind"),
        (lambda: Schedule((Rule("hbfp8", epochs=("last",)),)), "not an index"),
        (lambda: Schedule((Rule("hbfp8", epochs=("1:x",)),)), "not an index"),
        (lambda: Schedule((Rule("hbfp8", epochs=(3,)),)), "out of range"),
        (lambda: Schedule((Rule("hbfp8", epochs=(-4,)),)), "out of range"),
        (lambda: Schedule((Rule("hbfp99"),)), "hbfp99"),
        (lambda: Schedule.booster(last_epochs=-1), "last_epochs"),
    ],
)
def test_bad_selectors_give_one_clear_error(make, message: str) -> None:
    with pytest.raises(UserError, match=message) as info:
        make().resolve(LAYERS, 3)
    assert "\n" not in str(info.value)


def test_unmatched_layer_selector_names_the_layers_there_are() -> None:
    with pytest.raises(UserError, match=r"'conv\*' matches none of the 5 quantized layers \(stem"):
        Schedule((Rule("hbfp8", layers=("conv*",)),)).resolve(LAYERS, 1)


def test_a_schedule_needs_an_epoch() -> None:
    with pytest.raises(UserError, match="at least one epoch"):
        Schedule.uniform("hbfp8").resolve(LAYERS, 0)


def test_schedule_config_wants_exactly_one_kind() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        TrainConfig.model_validate({"schedule": {"format": "hbfp8", "booster": {}}})


def test_switching_epochs_changes_formats_in_place_keeping_model_and_optimizer() -> None:
    torch.manual_seed(0)
    model = convert(Net())
    optimizer = build_optimizer(model, OptimizerConfig())
    modules = dict(quantized_layers(model))
    params = [id(p) for group in optimizer.param_groups for p in group["params"]]
    quantization = Quantization("reference", "stochastic", "nearest")
    table = Schedule((Rule("hbfp4"), Rule("fp32", layers=("mix",)), Rule("hbfp8", epochs=(-1,))))
    table = table.resolve(layer_infos(model), 2)
    x, labels = torch.randn(4, 1, 6, 6), torch.tensor([0, 1, 2, 0])
    outputs = []
    for epoch in range(2):
        apply_formats(model, table[epoch], quantization)
        for name, layer in quantized_layers(model):
            assert layer is modules[name]
            if name == "mix" and epoch == 0:
                assert layer.quant is None  # an FP32 layer runs the plain torch code
            else:
                assert layer.quant == QuantSpec(table[epoch][name], "reference", "stochastic")
        with torch.no_grad():
            outputs.append(model.eval()(x))
        model.train()
        optimizer.zero_grad()
        F.cross_entropy(model(x), labels).backward()
        optimizer.step()
        assert [id(p) for group in optimizer.param_groups for p in group["params"]] == params
        assert {id(p) for p in optimizer.state} == set(params)
    assert sorted(id(p) for p in model.parameters()) == sorted(params)
    assert not torch.equal(outputs[0], outputs[1])


@pytest.mark.parametrize(
    ("shorthand", "full"),
    [
        ("HBFP4_b64", {"format": "hbfp4"}),
        ("booster", {"booster": {}}),
        ("booster:hbfp3:hbfp8:2", {"booster": {"low": "hbfp3", "high": "hbfp8", "last_epochs": 2}}),
        ("booster:hbfp3", {"booster": {"low": "hbfp3"}}),
        ([{"format": "hbfp4"}], {"rules": [{"format": "hbfp4"}]}),
    ],
)
def test_one_shorthand_grammar_for_training_files_and_sweep_baselines(
    shorthand: object, full: dict[str, object]
) -> None:
    expected = ScheduleConfig.model_validate(full)
    assert TrainConfig.model_validate({"schedule": shorthand}).schedule == expected
    if isinstance(shorthand, str):
        assert Baseline.model_validate(shorthand).schedule == expected
        assert Baseline.model_validate(shorthand).name_in(TrainConfig()) == expected.short_name


def test_a_booster_shorthand_takes_at_most_three_parts() -> None:
    with pytest.raises(ValidationError, match="at most booster:LOW:HIGH:LAST_EPOCHS"):
        TrainConfig.model_validate({"schedule": "booster:hbfp4:hbfp6:1:junk"})
