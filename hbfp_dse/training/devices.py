"""Device names as users write them (``auto``, ``cpu``, ``cuda``, ``cuda:N``) and the torch
device each one stands for here."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from ..errors import UserError


class DeviceError(UserError):
    """A device name that is not one, or a device this machine does not have."""

    def __init__(self, device: str, reason: str) -> None:
        super().__init__(f"device {device!r}: {reason}")
        self.device = device
        self.reason = reason


class DeviceUnavailableError(DeviceError):
    """A valid device name this machine cannot serve now: a fault of where the run is, not
    of the run (another worker, or a later attempt, may have the device)."""


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


def check_device_name(name: str) -> str:
    if name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit()):
        return name
    raise DeviceError(name, "device must be auto, cpu, cuda or cuda:N")


def device_type(name: str) -> str:
    """The kind of device a name trains on, ``cpu`` or ``cuda``; ``auto``: what this machine
    has. Devices of one kind give one run the same numbers, so the kind is part of a run's
    identity and the index is not."""
    check_device_name(name)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name.split(":")[0]


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
