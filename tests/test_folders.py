"""Image folders streamed from disk (``dataset: imagefolder``), and the generated CIFAR-shaped
dataset: loading, batches, reproducibility, training, and the errors of a wrong layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from hbfp_dse.errors import UserError
from hbfp_dse.training.assembly import model_for
from hbfp_dse.training.config import TrainConfig
from hbfp_dse.training.data import load_dataset
from hbfp_dse.training.folders import FolderDataset, load_folders
from hbfp_dse.training.trainer import load_config_data, train

CLASSES = ("cat", "dog", "eel")

pytestmark = pytest.mark.usefixtures("eager_quantizer")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ImageNet's layout in miniature: 3 classes, 6 training and 2 validation images each, of
    varied sizes, PNG and JPEG."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("val", 2)):
        for label, name in enumerate(CLASSES):
            directory = root / split / name
            directory.mkdir(parents=True)
            for i in range(count):
                height, width = 20 + 3 * i, 28 + 2 * label
                pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
                pixels[..., label] = 255  # each class its own dominant colour
                suffix = "png" if i % 2 else "jpg"
                Image.fromarray(pixels).save(directory / f"{i}.{suffix}")
    return root


def config(folder: Path, **changes: object) -> TrainConfig:
    base = {
        "model": "cnn",
        "dataset": "imagefolder",
        "data_dir": str(folder),
        "image_size": 16,
        "loader_workers": 2,
        "epochs": 2,
        "batch_size": 4,
        "device": "cpu",
    }
    return TrainConfig.model_validate(base | changes)


def batches(data: FolderDataset, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    train = data.train_batches(4, seed=3)
    train.set_epoch(epoch)
    return list(train)


def test_the_folders_load_with_their_classes_and_sizes(folder: Path) -> None:
    data = load_config_data(config(folder))
    assert isinstance(data, FolderDataset)
    assert (data.info.num_classes, data.info.in_channels, data.info.image_size) == (3, 3, 16)
    assert (len(data.train), len(data.test)) == (18, 6)
    images, labels = next(iter(data.test_batches(8)))
    assert images.shape == (6, 3, 16, 16)
    assert images.dtype == torch.float32
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_an_epoch_is_the_same_for_the_same_seed_and_epoch_and_differs_between_epochs(
    folder: Path,
) -> None:
    data = load_config_data(config(folder))
    assert isinstance(data, FolderDataset)
    first, again, other = batches(data, 1), batches(data, 1), batches(data, 2)
    assert [len(labels) for _, labels in first] == [4, 4, 4, 4, 2]
    for (a, la), (b, lb) in zip(first, again, strict=True):
        assert torch.equal(a, b)
        assert torch.equal(la, lb)
    assert not all(torch.equal(a, b) for (a, _), (b, _) in zip(first, other, strict=True))
    # Every training image once an epoch.
    assert sorted(torch.cat([labels for _, labels in first]).tolist()) == sorted(
        [c for c in range(3) for _ in range(6)]
    )


def test_a_model_trains_on_folders_and_is_shaped_by_them(folder: Path) -> None:
    cfg = config(folder, schedule="hbfp4")
    built = model_for(cfg)
    assert built.input_shape == (3, 16, 16)
    result = train(cfg)
    assert result.status == "done"
    assert len(result.epochs) == 2
    assert 0.0 <= result.epochs[-1].test_acc <= 1.0


def test_subsets_of_the_folders_are_class_balanced(folder: Path) -> None:
    data = load_folders(folder, image_size=16, workers=0, train_size=6, test_size=3)
    labels = [data.train.folder.targets[i] for i in data.train.indices]
    assert sorted(labels) == [0, 0, 1, 1, 2, 2]
    assert len(data.test) == 3


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("none", "no data_dir given"),
        ("no-val", "train/ or val/ is missing"),
        ("empty-train", "train/ holds no class folders"),
    ],
)
def test_a_folder_without_the_layout_is_one_clear_error(
    tmp_path: Path, layout: str, message: str
) -> None:
    (tmp_path / "train").mkdir()
    if layout == "no-val":
        (tmp_path / "train" / "cat").mkdir()
    if layout == "empty-train":
        (tmp_path / "val").mkdir()
    data_dir = None if layout == "none" else str(tmp_path)
    cfg = TrainConfig.model_validate({"dataset": "imagefolder", "data_dir": data_dir})
    with pytest.raises(UserError, match=message) as raised:
        load_config_data(cfg)
    assert "one folder of images per class" in str(raised.value)
    with pytest.raises(UserError, match=message):
        model_for(cfg)  # what the cost model and a sweep's planning build


@pytest.mark.parametrize("setting", [{"image_size": 64}, {"loader_workers": 2}])
def test_image_folder_settings_belong_to_image_folders(setting: dict[str, int]) -> None:
    (key,) = setting
    with pytest.raises(ValidationError, match=f"{key} applies to dataset imagefolder only"):
        TrainConfig.model_validate({"dataset": "cifar10", **setting})


def test_the_default_crop_given_is_the_default() -> None:
    given = TrainConfig.model_validate({"dataset": "imagefolder", "image_size": 224})
    assert given == TrainConfig.model_validate({"dataset": "imagefolder"})


def test_the_synthetic_cifar_set_has_cifar_shapes_and_is_reproducible() -> None:
    data = load_dataset("synthetic-cifar10", train_size=500, test_size=100)
    assert data.train.images.shape == (500, 3, 32, 32)
    assert (len(data.test), data.info.num_classes, data.info.augment) == (100, 10, True)
    again = load_dataset("synthetic-cifar10", train_size=500, test_size=100)
    assert torch.equal(data.train.images, again.train.images)
    assert torch.equal(data.test.labels, again.test.labels)
    full = load_dataset("synthetic-cifar10")
    assert (len(full.train), len(full.test)) == (50_000, 10_000)
