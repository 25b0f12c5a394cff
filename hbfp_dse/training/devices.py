"""Device names as users write them (``auto``, ``cpu``, ``cuda``, ``cuda:N``) and the torch
device each one stands for here."""

from __future__ import annotations

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


def use_exact_float32() -> None:
    """No TF32: float32 matmuls and convolutions stay float32 on CUDA, as on the CPU (cuDNN
    allows TF32 by default)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def tf32_allowed() -> bool:
    return torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32


def check_device_name(name: str) -> str:
    if name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit()):
        return name
    raise DeviceError(name, "device must be auto, cpu, cuda or cuda:N")


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
