"""A user's own model and dataset, named by import path (``package.module:function``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hbfp_dse.cli.app import app
from hbfp_dse.errors import UserError
from hbfp_dse.training.assembly import model_for
from hbfp_dse.training.config import TrainConfig
from hbfp_dse.training.trainer import train

MODULE = """
import torch
from torch import nn


def tiny(num_classes, in_channels, image_size):
    return nn.Sequential(
        nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
        nn.Linear(4 * image_size * image_size, num_classes),
    )


def needs_more(num_classes, in_channels, image_size, width):
    return tiny(num_classes, in_channels, image_size)


def not_a_model(num_classes, in_channels, image_size):
    return "a string"


def stripes(data_dir):
    generator = torch.Generator().manual_seed(0)
    def split(n):
        labels = torch.randint(0, 3, (n,), generator=generator)
        images = torch.randint(0, 60, (n, 2, 12, 12), generator=generator, dtype=torch.uint8)
        images[torch.arange(n), :, labels * 4] = 250  # a bright row per class
        return images, labels
    return {"train": split(96), "test": split(30), "mean": (0.3, 0.3), "std": (0.3, 0.3)}


def floats(data_dir):
    return {"train": (torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.int64)), "test": ()}

class Holder:
    model = staticmethod(tiny)
"""

pytestmark = pytest.mark.usefixtures("eager_quantizer")


@pytest.fixture
def in_user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory holds the user's module (and is not on sys.path before)."""
    (tmp_path / "usermodels.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "usermodels", raising=False)
    return tmp_path


def config(**changes: object) -> TrainConfig:
    base = {
        "model": "usermodels:tiny",
        "dataset": "usermodels:stripes",
        "epochs": 2,
        "batch_size": 16,
        "device": "cpu",
        "schedule": "hbfp6",
        "optimizer": {"lr": 0.05},
    }
    return TrainConfig.model_validate(base | changes)


@pytest.mark.usefixtures("in_user_dir")
def test_a_user_model_and_dataset_train_emulated() -> None:
    built = model_for(config())
    assert built.input_shape == (2, 12, 12)
    assert [layer.kind for layer in built.layers] == ["Conv2d", "Linear"]  # both quantized
    assert built.info.num_classes == 3
    result = train(config())
    assert result.status == "done"
    assert result.epochs[-1].test_acc > 0.9  # the bright rows are easy
    subset = train(config(train_size=30, test_size=9, epochs=1))
    assert subset.status == "done"


@pytest.mark.usefixtures("in_user_dir")
def test_a_nested_function_is_found() -> None:
    assert len(model_for(config(model="usermodels:Holder.model")).layers) == 2


@pytest.mark.usefixtures("in_user_dir")
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model": "nosuchmodule:f"}, "model 'nosuchmodule:f': cannot import nosuchmodule"),
        ({"model": "usermodels:missing"}, "model 'usermodels:missing': usermodels has no"),
        ({"model": "usermodels:needs_more"}, "calling it with (num_classes=3, in_channels=2"),
        ({"model": "usermodels:not_a_model"}, "returned a str, not an nn.Module"),
        ({"model": "usermodels:"}, "give an import path, package.module:function"),
        ({"dataset": "usermodels:floats"}, "dataset 'usermodels:floats': 'train': images must"),
    ],
)
def test_what_goes_wrong_is_one_message_naming_the_key(
    changes: dict[str, str], message: str
) -> None:
    with pytest.raises(UserError) as raised:
        model_for(config(**changes))
    assert message in str(raised.value)


def test_a_sweep_naming_a_broken_model_stores_nothing(in_user_dir: Path) -> None:
    sweep = in_user_dir / "mine.yaml"
    sweep.write_text(
        "base: {model: usermodels:needs_more, dataset: usermodels:stripes, device: cpu}\n"
        "baselines: [fp32]\n"
    )
    db = in_user_dir / "results.db"
    result = CliRunner().invoke(app, ["sweep", str(sweep), "--db", f"sqlite:///{db}"])
    assert result.exit_code == 2, result.output
    assert "model 'usermodels:needs_more': calling it with" in result.stderr
    assert "Traceback" not in result.output
    assert not db.exists()
