"""Image folders streamed from disk, for datasets that do not fit in memory (ImageNet).

``data_dir`` holds ``train/`` and ``val/`` (or ``test/``), each with one folder of images per
class, as torchvision's ``ImageFolder`` reads them. Worker processes decode and augment (the
standard ImageNet recipe: a random resized crop and a flip for training; a resize and a centre
crop for evaluation) into uint8 batches in pinned memory; a batch goes to the device without
waiting for it, and is normalised there as the in-memory datasets' batches are. The order of
an epoch and every augmentation draw follow from (seed, epoch) and the number of workers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

from ..errors import UserError
from .config import DEFAULT_IMAGE_SIZE, FOLDER_DATASET
from .data import DatasetInfo, Normaliser, class_balanced_order, epoch_generator, held_out

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_EVALUATION_SPLITS = ("val", "test")
_CPU = torch.device("cpu")


class FolderNotFoundError(UserError):
    """A data_dir without the layout of an image-folder dataset."""

    def __init__(self, root: Path | None, problem: str) -> None:
        super().__init__(
            f"dataset {FOLDER_DATASET!r}: {problem}; data_dir must hold train/ and val/ (or "
            "test/), each with one folder of images per class"
            + (f" (data_dir: {root})" if root is not None else "")
        )


def _split_dirs(root: Path | None) -> tuple[Path, Path]:
    if root is None:
        raise FolderNotFoundError(None, "no data_dir given")
    train = root / "train"
    evaluation = next((root / n for n in _EVALUATION_SPLITS if (root / n).is_dir()), None)
    if not train.is_dir() or evaluation is None:
        raise FolderNotFoundError(root, "train/ or val/ is missing")
    return train, evaluation


def folder_info(root: Path | None, image_size: int | None) -> DatasetInfo:
    """The dataset's facts, from its folder names alone (the cost model needs no images)."""
    train, _ = _split_dirs(root)
    classes = [d for d in train.iterdir() if d.is_dir()]
    if not classes:
        raise FolderNotFoundError(root, "train/ holds no class folders")
    size = image_size or DEFAULT_IMAGE_SIZE
    return DatasetInfo(FOLDER_DATASET, len(classes), 3, size, IMAGENET_MEAN, IMAGENET_STD, True)


class _Transformed(Dataset[tuple[Tensor, int]]):
    """An ``ImageFolder``'s (or a subset's) samples through a transform chosen per use."""

    def __init__(self, folder: ImageFolder, indices: list[int], transform: Callable[..., Any]):
        self.folder, self.indices, self.transform = folder, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path, label = self.folder.samples[self.indices[index]]
        return self.transform(self.folder.loader(path)), label


def _transform(size: int, augment: bool) -> v2.Compose:
    if augment:
        steps: list[Any] = [v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()]
    else:  # ImageNet's evaluation: the shorter side to 256/224 of the crop, then the centre
        steps = [v2.Resize(size * 256 // 224, antialias=True), v2.CenterCrop(size)]
    return v2.Compose([v2.RGB(), *steps, v2.PILToTensor()])


@dataclass(frozen=True)
class FolderSplit:
    folder: ImageFolder
    indices: list[int]

    def __len__(self) -> int:
        return len(self.indices)


class FolderBatches:
    """(normalised float images, int64 labels) batches on the device, streamed through a
    ``DataLoader``; each pass is one epoch, and ``set_epoch`` is all a resumed run needs."""

    def __init__(
        self,
        split: FolderSplit,
        info: DatasetInfo,
        batch_size: int,
        *,
        device: torch.device,
        workers: int,
        augment: bool,
        shuffle: bool,
        drop_last: bool = False,
        seed: int = 0,
    ) -> None:
        if batch_size < 1:
            raise UserError(f"batch_size must be positive, got {batch_size}")
        transform = _transform(info.image_size, augment)
        self.dataset = _Transformed(split.folder, split.indices, transform)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.device, self.workers, self.seed = device, workers, seed
        self.epoch = 0
        self._normalise = Normaliser(info.mean, info.std, device)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            shuffle=self.shuffle,
            drop_last=self.drop_last,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            generator=epoch_generator(self.seed, self.epoch),  # order and workers' seeds
        )
        self.epoch += 1
        for images, labels in loader:
            images = images.to(self.device, non_blocking=True)
            yield self._normalise(images), labels.to(self.device, non_blocking=True)


@dataclass(frozen=True)
class FolderDataset:
    """An image-folder dataset: its facts and the samples of each split, read as they are
    needed, on ``device`` once batched."""

    info: DatasetInfo
    train: FolderSplit
    test: FolderSplit
    workers: int
    device: torch.device = _CPU
    validation: FolderSplit | None = None  # held out of train/ (``with_validation``)

    def to(self, device: torch.device | str) -> FolderDataset:
        return replace(self, device=torch.device(device))

    def with_validation(self, share: float, seed: int) -> FolderDataset:
        """``share`` of the training images held out as the validation split."""
        if share == 0:
            return self
        targets = self.train.folder.targets
        labels = torch.tensor([targets[i] for i in self.train.indices], dtype=torch.int64)
        kept, held = held_out(labels, share, seed)
        indices = self.train.indices
        train = FolderSplit(self.train.folder, [indices[i] for i in kept.tolist()])
        validation = FolderSplit(self.train.folder, [indices[i] for i in held.tolist()])
        return replace(self, train=train, validation=validation)

    def train_batches(
        self,
        batch_size: int,
        *,
        seed: int = 0,
        drop_last: bool = False,
        augment: bool | None = None,
    ) -> FolderBatches:
        return FolderBatches(
            self.train,
            self.info,
            batch_size,
            device=self.device,
            workers=self.workers,
            augment=self.info.augment if augment is None else augment,
            shuffle=True,
            drop_last=drop_last,
            seed=seed,
        )

    def test_batches(self, batch_size: int) -> FolderBatches:
        return self._evaluation_batches(self.test, batch_size)

    def validation_batches(self, batch_size: int) -> FolderBatches | None:
        if self.validation is None:
            return None
        return self._evaluation_batches(self.validation, batch_size)

    def _evaluation_batches(self, split: FolderSplit, batch_size: int) -> FolderBatches:
        return FolderBatches(
            split,
            self.info,
            batch_size,
            device=self.device,
            workers=self.workers,
            augment=False,
            shuffle=False,
        )


def _split(folder: ImageFolder, size: int | None, split_seed: int, what: str) -> FolderSplit:
    available = len(folder.samples)
    if size is None or size == available:
        return FolderSplit(folder, list(range(available)))
    if not 1 <= size <= available:
        raise UserError(f"{what} must be in 1..{available}, got {size}")
    labels = torch.tensor(folder.targets, dtype=torch.int64)
    order = class_balanced_order(labels, torch.Generator().manual_seed(split_seed))
    return FolderSplit(folder, order[:size].tolist())


def load_folders(
    root: Path | None,
    *,
    image_size: int | None,
    workers: int,
    train_size: int | None = None,
    test_size: int | None = None,
    split_seed: int = 0,
) -> FolderDataset:
    """The image folders under ``root``, their files listed but not read."""
    info = folder_info(root, image_size)
    train_dir, test_dir = _split_dirs(root)
    try:
        train, test = ImageFolder(train_dir), ImageFolder(test_dir)
    except (FileNotFoundError, RuntimeError) as err:  # a class folder without images
        raise FolderNotFoundError(root, str(err)) from None
    if train.classes != test.classes:
        raise FolderNotFoundError(root, f"{test_dir.name}/ has other classes than train/")
    return FolderDataset(
        info,
        _split(train, train_size, split_seed, "train_size"),
        _split(test, test_size, split_seed, "test_size"),
        workers,
    )
