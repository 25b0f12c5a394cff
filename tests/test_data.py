"""Datasets: mnist-5k, the official on-disk formats through the real loaders, batches, augmentation.

The on-disk tests write tiny files in the official formats (idx ubyte, CIFAR pickled batches,
SVHN .mat) and read them through torchvision's dataset classes.
"""

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar
import torchvision.datasets.svhn
from torchvision.datasets.utils import check_integrity

from hbfp_dse.training import data as data_module
from hbfp_dse.training.data import (
    DATASET_INFO,
    DATASET_NAMES,
    DatasetNotFoundError,
    ImageSplit,
    TensorBatches,
    class_balanced_order,
    load_dataset,
    random_crop_flip,
    read_idx,
)

IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


# ---- writers of the official on-disk formats ---------------------------------------------------


def write_idx(path: Path, array: np.ndarray) -> None:
    """idx ubyte: two zero bytes, type 0x08 (ubyte), ndim, big-endian uint32 dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)


def tiny_images(n: int, channels: int, size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, channels, size, size), dtype=np.uint8)


def tiny_labels(n: int, classes: int) -> np.ndarray:
    return np.arange(n) % classes


def write_mnist_like(directory: Path, suffix: str, n_train: int = 20, n_test: int = 10) -> dict:
    arrays = {
        "train_images": tiny_images(n_train, 1, 28, seed=1)[:, 0],
        "train_labels": tiny_labels(n_train, 10),
        "test_images": tiny_images(n_test, 1, 28, seed=2)[:, 0],
        "test_labels": tiny_labels(n_test, 10)[::-1].copy(),
    }
    for key, array in arrays.items():
        write_idx(directory / f"{IDX_NAMES[key]}{suffix}", array)
    return arrays


def write_pickle(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj))


def cifar_rows(images: np.ndarray) -> np.ndarray:
    """CIFAR rows: 3072 bytes, the red plane then green then blue, each row-major 32x32."""
    return images.reshape(len(images), -1)


def write_cifar10(root: Path, per_batch: int = 4, n_test: int = 6) -> tuple[np.ndarray, ...]:
    folder = root / "cifar-10-batches-py"
    train = tiny_images(5 * per_batch, 3, 32, seed=3)
    train_labels = tiny_labels(5 * per_batch, 10)
    for b in range(5):
        rows = slice(b * per_batch, (b + 1) * per_batch)
        batch = {"data": cifar_rows(train[rows]), "labels": train_labels[rows].tolist()}
        write_pickle(folder / f"data_batch_{b + 1}", batch)
    test = tiny_images(n_test, 3, 32, seed=4)
    test_labels = tiny_labels(n_test, 10)
    write_pickle(folder / "test_batch", {"data": cifar_rows(test), "labels": test_labels.tolist()})
    write_pickle(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)]})
    return train, train_labels, test, test_labels


def write_cifar100(root: Path, n_train: int = 8, n_test: int = 4) -> tuple[np.ndarray, ...]:
    folder = root / "cifar-100-python"
    train, test = tiny_images(n_train, 3, 32, seed=5), tiny_images(n_test, 3, 32, seed=6)
    train_labels, test_labels = tiny_labels(n_train, 100) * 7, tiny_labels(n_test, 100) * 11
    for name, images, labels in (("train", train, train_labels), ("test", test, test_labels)):
        coarse = (labels // 5).tolist()
        entry = {
            "data": cifar_rows(images),
            "fine_labels": labels.tolist(),
            "coarse_labels": coarse,
        }
        write_pickle(folder / name, entry)
    names = {"fine_label_names": [f"f{i}" for i in range(100)], "coarse_label_names": []}
    write_pickle(folder / "meta", names)
    return train, train_labels, test, test_labels


@pytest.fixture
def no_md5_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Our tiny files cannot match the official md5 sums: check only that they exist."""

    def exists(fpath: str, md5: str | None = None) -> bool:
        return check_integrity(fpath)

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", exists)
    monkeypatch.setattr(torchvision.datasets.svhn, "check_integrity", exists)


@pytest.fixture
def no_local_copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the default root and Debian's directory at empty places."""
    monkeypatch.setattr(data_module, "DEFAULT_DATA_ROOT", tmp_path / "default-root")
    monkeypatch.setattr(data_module, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "debian")
    return tmp_path


# ---- mnist-5k ------------------------------------------------------------------------------------


def test_mnist_5k_default_split_is_class_balanced() -> None:
    pair = load_dataset()
    assert pair.info.name == "mnist-5k"
    assert pair.train.images.shape == (4000, 1, 28, 28)
    assert pair.test.images.shape == (1000, 1, 28, 28)
    assert pair.train.images.dtype == torch.uint8
    assert pair.train.labels.dtype == torch.int64
    assert torch.bincount(pair.train.labels).tolist() == [400] * 10
    assert torch.bincount(pair.test.labels).tolist() == [100] * 10


def test_mnist_5k_split_uses_every_digit_once() -> None:
    pair = load_dataset()
    rows = torch.cat([pair.train.images, pair.test.images]).flatten(1)
    assert torch.unique(rows, dim=0).shape[0] == rows.shape[0] == 5000


def test_mnist_5k_split_is_deterministic_per_seed() -> None:
    a, b, c = (load_dataset(split_seed=s) for s in (0, 0, 1))
    assert torch.equal(a.test.images, b.test.images)
    assert torch.equal(a.train.labels, b.train.labels)
    assert not torch.equal(a.test.images, c.test.images)


def test_mnist_5k_subset_sizes_keep_the_test_set() -> None:
    small = load_dataset(train_size=500, test_size=1000)
    assert len(small.train) == 500
    assert torch.bincount(small.train.labels).tolist() == [50] * 10
    assert torch.equal(small.test.images, load_dataset().test.images)


@pytest.mark.parametrize(("train_size", "test_size"), [(4500, 1000), (None, 0), (0, None)])
def test_mnist_5k_rejects_impossible_sizes(train_size: int | None, test_size: int | None) -> None:
    with pytest.raises(ValueError, match="_size must be in"):
        load_dataset(train_size=train_size, test_size=test_size)


def test_unknown_dataset_lists_names() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'") as err:
        load_dataset("imagenet")
    assert all(name in str(err.value) for name in DATASET_NAMES)


# ---- official on-disk formats through the real loaders -----------------------------------------


def assert_mnist_like(pair, arrays: dict) -> None:
    assert torch.equal(pair.train.images[:, 0], torch.from_numpy(arrays["train_images"]))
    assert torch.equal(pair.test.images[:, 0], torch.from_numpy(arrays["test_images"]))
    assert pair.train.labels.tolist() == arrays["train_labels"].tolist()
    assert pair.test.labels.tolist() == arrays["test_labels"].tolist()
    assert pair.train.labels.dtype == torch.int64


def test_read_idx_reads_raw_and_gzipped_files(tmp_path: Path) -> None:
    array = tiny_images(3, 1, 5, seed=0)[:, 0]
    write_idx(tmp_path / "raw", array)
    write_idx(tmp_path / "zipped.gz", array)
    assert np.array_equal(read_idx(tmp_path / "raw"), array)
    assert np.array_equal(read_idx(tmp_path / "zipped.gz"), array)


def test_mnist_from_torchvision_layout(tmp_path: Path) -> None:
    arrays = write_mnist_like(tmp_path / "MNIST" / "raw", suffix="")
    assert_mnist_like(load_dataset("mnist", root=tmp_path), arrays)


def test_fashion_mnist_from_torchvision_layout(tmp_path: Path, no_local_copies: Path) -> None:
    root = tmp_path / "data"
    arrays = write_mnist_like(root / "FashionMNIST" / "raw", suffix="")
    pair = load_dataset("fashion-mnist", root=root)
    assert_mnist_like(pair, arrays)
    assert pair.info.mean == (0.2860,)


def test_fashion_mnist_from_official_gz_files_in_root(
    tmp_path: Path, no_local_copies: Path
) -> None:
    root = tmp_path / "flat"
    arrays = write_mnist_like(root, suffix=".gz")
    assert_mnist_like(load_dataset("fashion-mnist", root=root), arrays)


def test_fashion_mnist_from_debian_package(no_local_copies: Path) -> None:
    arrays = write_mnist_like(no_local_copies / "debian", suffix=".gz")
    assert_mnist_like(load_dataset("fashion-mnist"), arrays)


def test_cifar10_pickled_batches_through_torchvision(tmp_path: Path, no_md5_check: None) -> None:
    train, train_labels, test, test_labels = write_cifar10(tmp_path)
    pair = load_dataset("cifar10", root=tmp_path)
    assert pair.train.images.shape == (20, 3, 32, 32)
    assert torch.equal(pair.train.images, torch.from_numpy(train))
    assert torch.equal(pair.test.images, torch.from_numpy(test))
    assert pair.train.labels.tolist() == train_labels.tolist()
    assert pair.test.labels.tolist() == test_labels.tolist()
    assert pair.info.augment


def test_cifar100_pickled_files_through_torchvision(tmp_path: Path, no_md5_check: None) -> None:
    train, train_labels, test, test_labels = write_cifar100(tmp_path)
    pair = load_dataset("cifar100", root=tmp_path)
    assert torch.equal(pair.train.images, torch.from_numpy(train))
    assert torch.equal(pair.test.images, torch.from_numpy(test))
    assert pair.train.labels.tolist() == train_labels.tolist()
    assert pair.test.labels.tolist() == test_labels.tolist()
    assert pair.info.num_classes == 100


def test_svhn_mat_files_through_torchvision(tmp_path: Path, no_md5_check: None) -> None:
    scipy_io = pytest.importorskip("scipy.io")
    images = {"train": tiny_images(5, 3, 32, seed=7), "test": tiny_images(3, 3, 32, seed=8)}
    # SVHN stores X as 32 x 32 x 3 x N and labels 1..10, with 10 meaning the digit 0.
    labels = {"train": np.array([[10], [1], [2], [3], [9]]), "test": np.array([[4], [10], [5]])}
    for split in ("train", "test"):
        x = images[split].transpose(2, 3, 1, 0)
        scipy_io.savemat(tmp_path / f"{split}_32x32.mat", {"X": x, "y": labels[split]})
    pair = load_dataset("svhn", root=tmp_path)
    assert torch.equal(pair.train.images, torch.from_numpy(images["train"]))
    assert pair.train.labels.tolist() == [0, 1, 2, 3, 9]
    assert pair.test.labels.tolist() == [4, 0, 5]


def test_subsets_of_official_splits_are_seeded_and_balanced(
    tmp_path: Path, no_md5_check: None
) -> None:
    write_cifar10(tmp_path)
    a = load_dataset("cifar10", root=tmp_path, train_size=10, test_size=3, split_seed=5)
    b = load_dataset("cifar10", root=tmp_path, train_size=10, test_size=3, split_seed=5)
    assert (len(a.train), len(a.test)) == (10, 3)
    assert sorted(a.train.labels.tolist()) == list(range(10))
    assert torch.equal(a.train.images, b.train.images)
    with pytest.raises(ValueError, match=r"train_size must be in 1\.\.20"):
        load_dataset("cifar10", root=tmp_path, train_size=21)


# ---- missing data ----------------------------------------------------------------------------


def test_missing_cifar_says_where_it_looked_and_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("cifar10", root=tmp_path)
    message = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "data_dir: DIR" in message  # the configuration key; `train` adds its --data-dir
    assert "download: true" in message
    assert isinstance(err.value, ValueError)


def test_missing_fashion_mnist_mentions_every_place_and_debian(no_local_copies: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("fashion-mnist")
    message = str(err.value)
    assert str(no_local_copies / "default-root" / "FashionMNIST" / "raw") in message
    assert str(no_local_copies / "debian") in message
    assert "apt-get install dataset-fashion-mnist" in message


def test_failed_download_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", offline)
    with pytest.raises(DatasetNotFoundError, match="download failed: network unreachable"):
        load_dataset("cifar10", root=tmp_path, download=True)


# ---- batches ---------------------------------------------------------------------------------


def indexed_split(n: int, channels: int = 1, size: int = 4) -> ImageSplit:
    """Images whose every pixel holds the sample index, labels equal to the index."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, channels, size, size)
    return ImageSplit(images.contiguous(), torch.arange(n))


def batches(split: ImageSplit, batch_size: int, **kwargs: object) -> TensorBatches:
    return TensorBatches(split, batch_size, mean=(0.0,), std=(1.0 / 255.0,), **kwargs)


def test_shuffled_epoch_covers_every_sample_once() -> None:
    loader = batches(indexed_split(23), 5, shuffle=True, seed=3)
    seen = [y for _, y in loader]
    assert [len(y) for y in seen] == [5, 5, 5, 5, 3]
    assert len(loader) == 5
    assert sorted(torch.cat(seen).tolist()) == list(range(23))


def test_batches_pair_each_image_with_its_label() -> None:
    for x, y in batches(indexed_split(10), 4, shuffle=True):
        assert torch.equal(x[:, 0, 0, 0], y.float())  # std 1/255: the float is the pixel value


def test_drop_last_drops_the_short_batch() -> None:
    loader = batches(indexed_split(23), 5, shuffle=True, drop_last=True)
    sizes = [len(y) for _, y in loader]
    assert sizes == [5, 5, 5, 5]
    assert len(loader) == 4


def test_epochs_differ_and_are_reproducible_with_set_epoch() -> None:
    loader = batches(indexed_split(50), 50, shuffle=True, seed=1)
    first, second = (next(iter(loader))[1] for _ in range(2))
    assert loader.epoch == 2
    assert not torch.equal(first, second)
    loader.set_epoch(1)
    assert torch.equal(next(iter(loader))[1], second)
    other_seed = batches(indexed_split(50), 50, shuffle=True, seed=2)
    assert not torch.equal(next(iter(other_seed))[1], first)


def test_unshuffled_batches_keep_the_order() -> None:
    labels = torch.cat([y for _, y in batches(indexed_split(7), 3)])
    assert labels.tolist() == list(range(7))


def test_batches_are_normalised_with_the_dataset_statistics() -> None:
    pair = load_dataset()
    x, _ = next(iter(pair.test_batches(1000)))
    mean, std = pair.info.mean[0], pair.info.std[0]
    expected = (pair.test.images.float() / 255 - mean) / std
    assert x.dtype == torch.float32
    assert torch.allclose(x, expected, atol=1e-5)
    assert abs(x.mean().item()) < 0.1
    assert abs(x.std().item() - 1) < 0.1


def test_augmentation_defaults_follow_the_dataset() -> None:
    pair = load_dataset(train_size=64)
    assert not pair.train_batches(8).augment
    assert pair.train_batches(8, augment=True).augment
    assert DATASET_INFO["cifar10"].augment
    assert DATASET_INFO["cifar100"].augment
    assert not DATASET_INFO["fashion-mnist"].augment


# ---- augmentation ----------------------------------------------------------------------------


def crops_and_flips(image: torch.Tensor, padding: int) -> list[torch.Tensor]:
    """Every image the augmentation may produce from one C x H x W image."""
    height, width = image.shape[1:]
    padded = torch.nn.functional.pad(image, (padding,) * 4)
    options = []
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            crop = padded[:, dy : dy + height, dx : dx + width]
            options += [crop, crop.flip(-1)]
    return options


def test_augmentation_only_crops_and_flips() -> None:
    images = torch.from_numpy(tiny_images(16, 3, 8, seed=9)).add_(1)  # no zeros before padding
    out = random_crop_flip(images, torch.Generator().manual_seed(0), padding=2)
    assert out.shape == images.shape
    assert out.dtype == torch.uint8
    for original, augmented in zip(images, out, strict=True):
        assert any(torch.equal(augmented, option) for option in crops_and_flips(original, 2))


def test_augmentation_flips_and_shifts_some_images() -> None:
    images = torch.from_numpy(tiny_images(64, 1, 8, seed=10))
    flipped_only = random_crop_flip(images, torch.Generator().manual_seed(1), padding=0)
    is_flipped = [torch.equal(a, b.flip(-1)) for a, b in zip(flipped_only, images, strict=True)]
    assert 10 < sum(is_flipped) < 54
    shifted = random_crop_flip(images, torch.Generator().manual_seed(1), padding=4)
    zero_columns_or_rows = (shifted == 0).all(dim=-1).any(-1) | (shifted == 0).all(dim=-2).any(-1)
    assert zero_columns_or_rows.float().mean() > 0.5  # most offsets expose the zero padding


def test_augmentation_is_deterministic_with_a_seed() -> None:
    images = torch.from_numpy(tiny_images(32, 3, 32, seed=11))
    a, b, c = (random_crop_flip(images, torch.Generator().manual_seed(s), 4) for s in (5, 5, 6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_augmented_epochs_are_reproducible() -> None:
    split = ImageSplit(torch.from_numpy(tiny_images(12, 3, 8, seed=12)), torch.arange(12))
    kwargs = {"mean": (0.5,) * 3, "std": (0.25,) * 3, "shuffle": True, "augment": True, "seed": 4}
    a = [x for x, _ in TensorBatches(split, 5, **kwargs)]
    b = [x for x, _ in TensorBatches(split, 5, **kwargs)]
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


# ---- helpers ---------------------------------------------------------------------------------


def test_class_balanced_order_balances_every_prefix() -> None:
    labels = torch.tensor([0] * 6 + [1] * 3 + [2] * 3)
    order = class_balanced_order(labels, torch.Generator().manual_seed(0))
    assert sorted(order.tolist()) == list(range(12))
    assert sorted(labels[order[:3]].tolist()) == [0, 1, 2]
    assert sorted(labels[order[:9]].tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_image_split_validates_dtypes() -> None:
    with pytest.raises(ValueError, match="uint8"):
        ImageSplit(torch.zeros(2, 1, 4, 4), torch.arange(2))
    with pytest.raises(ValueError, match="int64"):
        ImageSplit(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.arange(3))
