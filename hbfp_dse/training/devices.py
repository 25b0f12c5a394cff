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
        raise DeviceError(name, "CUDA is not available here")
    return torch.device(name)
