"""Models and datasets a user names by import path: ``model: package.module:function``.

The module is imported from the working directory or ``PYTHONPATH``. A model function is called
with the task's shape as keywords (``num_classes``, ``in_channels``, ``image_size`` for images;
``vocabulary`` and ``context_length`` for text) and must return an ``nn.Module``. A dataset
function is called with ``data_dir`` (the configuration's, or None) and must return a mapping
with ``train`` and ``test``, each an (images, labels) pair: uint8 N x C x H x W images, int64
labels from 0; ``mean`` and ``std`` (per channel, of x/255) and ``augment`` (CIFAR's crop and
flip) are optional. Every failure is one message naming the
key and the path.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import UserError
from .data import DatasetInfo, DatasetPair, ImageSplit


def _function(key: str, path: str) -> Callable[..., Any]:
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise UserError(f"{key} {path!r}: give an import path, package.module:function")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would: the user's own modules
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as err:  # the user's module: any error is theirs to read
        raise UserError(f"{key} {path!r}: cannot import {module_name}: {_said(err)}") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise UserError(f"{key} {path!r}: {module_name} has no {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise UserError(f"{key} {path!r}: {attribute} is not a function")
    return target  # type: ignore[no-any-return]


def _call(key: str, path: str, **arguments: Any) -> Any:
    given = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
    try:
        return _function(key, path)(**arguments)
    except UserError:
        raise
    except Exception as err:
        raise UserError(f"{key} {path!r}: calling it with ({given}) failed: {_said(err)}") from None


def _said(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def user_model(path: str, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    model = _call(
        "model", path, num_classes=num_classes, in_channels=in_channels, image_size=image_size
    )
    if not isinstance(model, nn.Module):
        raise UserError(f"model {path!r}: returned a {type(model).__name__}, not an nn.Module")
    return model


def user_language_model(path: str, vocabulary: int, context_length: int) -> nn.Module:
    """A model of a text dataset's tokens: called with ``vocabulary`` and ``context_length``,
    it maps int64 tokens N x T to logits N x T x vocabulary."""
    model = _call("model", path, vocabulary=vocabulary, context_length=context_length)
    if not isinstance(model, nn.Module):
        raise UserError(f"model {path!r}: returned a {type(model).__name__}, not an nn.Module")
    return model


@functools.cache
def user_dataset(path: str, data_dir: str | None) -> DatasetPair:
    """The dataset the function returns (called once per path and data_dir)."""
    returned = _call("dataset", path, data_dir=data_dir)
    if not isinstance(returned, Mapping) or not {"train", "test"} <= returned.keys():
        raise UserError(f"dataset {path!r}: must return a mapping with 'train' and 'test'")
    train = _split(path, "train", returned["train"])
    test = _split(path, "test", returned["test"])
    channels, height, width = train.images.shape[1:]
    if height != width or test.images.shape[1:] != train.images.shape[1:]:
        raise UserError(
            f"dataset {path!r}: images must be square and of one shape in both splits, got "
            f"{tuple(train.images.shape[1:])} and {tuple(test.images.shape[1:])}"
        )
    classes = int(torch.cat([train.labels, test.labels]).max()) + 1
    if int(torch.cat([train.labels, test.labels]).min()) < 0:
        raise UserError(f"dataset {path!r}: labels must be 0, 1, ... (got a negative one)")
    mean = tuple(returned.get("mean", (0.5,) * channels))
    std = tuple(returned.get("std", (0.25,) * channels))
    if len(mean) != channels or len(std) != channels:
        raise UserError(f"dataset {path!r}: mean and std need one value per channel")
    augment = bool(returned.get("augment", False))
    info = DatasetInfo(path, classes, channels, height, mean, std, augment)
    return DatasetPair(info, train, test)


def _split(path: str, name: str, value: Any) -> ImageSplit:
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise UserError(f"dataset {path!r}: {name!r} must be an (images, labels) pair")
    images, labels = value
    if not isinstance(images, Tensor) or not isinstance(labels, Tensor):
        raise UserError(f"dataset {path!r}: {name!r} must hold two tensors")
    try:
        return ImageSplit(images, labels)
    except UserError as err:
        raise UserError(f"dataset {path!r}: {name!r}: {err}") from None
