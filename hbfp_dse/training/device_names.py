"""Device names as users write them (``auto``, ``cpu``, ``cuda``, ``cuda:N``), checked
without torch; ``devices.py`` gives the torch device each stands for."""

from __future__ import annotations

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
        import torch  # here only: reading stored runs never needs torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return name.split(":")[0]
