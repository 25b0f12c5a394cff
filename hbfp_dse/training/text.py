"""Text for next-token prediction, byte-level: every byte is a token (a vocabulary of 256).

``pydoc-topics`` is the English documentation every Python installation ships in
``pydoc_data.topics`` (about 465 KB, offline); ``text`` is any file, named by ``data_dir``. A
corpus is split by position: the first 90% trains, the next 5% validates, the last 5% tests.
A split is cut into windows of ``context + 1`` bytes (non-overlapping, the last partial one
dropped); a sample is a window's first ``context`` bytes and, as labels, the ``context`` bytes
after each. Training shuffles the windows, a permutation of its own for each (seed, epoch).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import torch
from torch import Tensor

from ..errors import UserError
from .config import DEFAULT_CONTEXT_LENGTH
from .data import DatasetInfo, epoch_generator, to_device

VOCABULARY = 256
_SPLITS = (0.90, 0.05)  # train, validation; the test split is the rest
_CPU = torch.device("cpu")


def text_info(name: str, context: int | None) -> DatasetInfo:
    """A text dataset's facts: ``num_classes`` is the vocabulary, ``image_size`` the context."""
    size = context or DEFAULT_CONTEXT_LENGTH
    return DatasetInfo(name, VOCABULARY, 1, size, (0.0,), (1.0,), False, kind="text")


@cache
def _corpus(name: str, path: str | None) -> Tensor:
    if name == "pydoc-topics":
        from pydoc_data.topics import topics  # in the standard library since Python 3.0

        text = "\n\n".join(topics[key] for key in sorted(topics)).encode("utf-8")
    else:
        if path is None:
            raise UserError("dataset 'text' needs data_dir: the text file to train on")
        file = Path(path).expanduser()
        try:
            text = file.read_bytes()
        except OSError as err:
            raise UserError(f"dataset 'text': cannot read data_dir {file}: {err}") from None
    return torch.frombuffer(bytearray(text), dtype=torch.uint8).clone()


@dataclass(frozen=True)
class TextSplit:
    """Windows of ``context + 1`` tokens, N x (context + 1), uint8."""

    windows: Tensor

    def __len__(self) -> int:
        return self.windows.shape[0]


class TextBatches:
    """(tokens, next tokens) batches, both int64 N x context, on the split's device."""

    def __init__(self, split: TextSplit, batch_size: int, *, shuffle: bool, seed: int = 0) -> None:
        if batch_size < 1:
            raise UserError(f"batch_size must be positive, got {batch_size}")
        self.split, self.batch_size, self.shuffle, self.seed = split, batch_size, shuffle, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.split) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        windows = self.split.windows
        order = None
        if self.shuffle:
            permutation = torch.randperm(
                len(windows), generator=epoch_generator(self.seed, self.epoch)
            )
            order = to_device(permutation, windows.device)
        self.epoch += 1
        for start in range(0, len(windows), self.batch_size):
            rows = slice(start, start + self.batch_size)
            batch = (windows[order[rows]] if order is not None else windows[rows]).long()
            yield batch[:, :-1], batch[:, 1:]


@dataclass(frozen=True)
class TextDataset:
    info: DatasetInfo
    train: TextSplit
    validation: TextSplit | None  # the corpus's validation stretch, where it is used
    test: TextSplit

    def to(self, device: torch.device | str) -> TextDataset:
        held = None if self.validation is None else TextSplit(self.validation.windows.to(device))
        return replace(
            self,
            train=TextSplit(self.train.windows.to(device)),
            validation=held,
            test=TextSplit(self.test.windows.to(device)),
        )

    def with_validation(self, share: float, seed: int) -> TextDataset:
        """Text validates on the corpus's own stretch between training and test (windows cut
        from the training text would share its passages): any ``share`` but 0 selects it."""
        return self if share else replace(self, validation=None)

    def train_batches(
        self,
        batch_size: int,
        *,
        seed: int = 0,
        drop_last: bool = False,
        augment: bool | None = None,
    ) -> TextBatches:
        if augment:
            raise UserError("text has no augmentation: set augment to null or false")
        return TextBatches(self.train, batch_size, shuffle=True, seed=seed)

    def test_batches(self, batch_size: int) -> TextBatches:
        return TextBatches(self.test, batch_size, shuffle=False)

    def validation_batches(self, batch_size: int) -> TextBatches | None:
        if self.validation is None:
            return None
        return TextBatches(self.validation, batch_size, shuffle=False)


def _windows(tokens: Tensor, context: int, limit: int | None, what: str) -> TextSplit:
    count = (len(tokens) - 1) // context if len(tokens) > context else 0
    if count == 0:
        raise UserError(f"the {what} split has fewer than {context + 1} bytes: a longer text")
    if limit is not None:
        if not 1 <= limit <= count:
            raise UserError(f"{what}_size must be in 1..{count} windows, got {limit}")
        count = limit
    starts = torch.arange(count) * context
    return TextSplit(tokens[starts[:, None] + torch.arange(context + 1)])


def load_text(
    name: str,
    path: str | None,
    *,
    context: int | None,
    train_size: int | None = None,
    test_size: int | None = None,
) -> TextDataset:
    """The corpus split by position; ``train_size`` and ``test_size`` count windows (the
    first ones of their splits)."""
    info = text_info(name, context)
    tokens = _corpus(name, path)
    train_end = int(len(tokens) * _SPLITS[0])
    validation_end = train_end + int(len(tokens) * _SPLITS[1])
    size = info.image_size
    return TextDataset(
        info,
        _windows(tokens[:train_end], size, train_size, "train"),
        _windows(tokens[train_end:validation_end], size, None, "validation"),
        _windows(tokens[validation_end:], size, test_size, "test"),
    )
