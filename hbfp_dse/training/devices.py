"""The torch device each device name (``device_names.py``) stands for here, and float32 kept
exact on it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from .device_names import DeviceUnavailableError, check_device_name


def _precision_settings() -> list[Any]:
    """torch's per-backend float32 precision settings (torch 2.9 on), or none before them."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is None or not hasattr(conv, "fp32_precision"):
        return []
    return [torch.backends.cuda.matmul, conv]


@contextlib.contextmanager
def exact_float32() -> Iterator[None]:
    """No TF32 inside: float32 matmuls and convolutions stay float32 on CUDA, as on the CPU
    (cuDNN allows TF32 by default). The settings are restored afterwards. Only the API of the
    torch in use is touched: torch refuses a mix of the old flags and the new settings."""
    settings = _precision_settings()
    if settings:
        saved = [setting.fp32_precision for setting in settings]
        for setting in settings:
            setting.fp32_precision = "ieee"
    else:
        saved = [torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32]
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        if settings:
            for setting, value in zip(settings, saved, strict=True):
                setting.fp32_precision = value
        else:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def tf32_allowed() -> bool:
    """Whether float32 matmuls or convolutions may run in TF32 now."""
    settings = _precision_settings()
    if not settings:
        return torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32
    inherited = torch.backends.fp32_precision  # what "none" stands for
    return any(
        (setting.fp32_precision if setting.fp32_precision != "none" else inherited) == "tf32"
        for setting in settings
    )


def resolve_device(name: str) -> torch.device:
    """The torch device of a name; ``auto`` is CUDA where there is one."""
    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceUnavailableError(name, "CUDA is not available here")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise DeviceUnavailableError(name, f"this machine has {count} CUDA device(s)")
    return torch.device(name)
