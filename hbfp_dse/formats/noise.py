"""Stochastic rounding's noise, counter-based and computed inside the quantizer's own pass.

The noise of a call is a hash of (the stream's seed, the call's number, the element's position
in memory order): no random tensor is drawn or stored, the compiled kernel makes it while the
data are in registers, and the bits are the same on every device, eager or compiled. A stream
is its seed and its count of calls, so a run restored from a checkpoint continues the same
noise. The position is in memory order: the same values in another layout (channels-last or
contiguous) get other noise, which is why the layout is part of a run's configuration.

The hash is two rounds of a 32-bit finaliser (multipliers below 2**31, so that every product of
the int64 arithmetic stays exact on every backend), keyed by the seed and the call number.
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

MASK32 = 0xFFFFFFFF
# The low-bias two-multiply finaliser of C. Wellons' hash-prospector; both odd, below 2**31.
_M1, _M2 = 0x21F0AAAD, 0x735A2D97
GOLDEN = 0x9E3779B9


Word = TypeVar("Word", Tensor, int)


def mix32(x: Word) -> Word:
    """A bijection of 32-bit values held in int64 (or Python ints), each output bit depending
    on every input bit."""
    x = x ^ (x >> 16)
    x = (x * _M1) & MASK32
    x = x ^ (x >> 15)
    x = (x * _M2) & MASK32
    return x ^ (x >> 15)


def uniform_noise(shape: torch.Size | tuple[int, ...], key: Tensor) -> Tensor:
    """U[0, 1) noise with 24 random bits for each element of a contiguous tensor of ``shape``
    (multiples of 2**-24, exact in FP32), from ``key`` = [seed, call] (int64, on the device)."""
    seed, call = key[0], key[1]
    k0 = mix32((seed & MASK32) ^ mix32(call & MASK32))
    k1 = mix32(k0 ^ (seed >> 32) ^ ((call >> 32) & MASK32) ^ GOLDEN)
    index = torch.arange(math.prod(shape), device=key.device, dtype=torch.int64).view(shape)
    bits = mix32(mix32((index & MASK32) ^ k0) ^ k1 ^ (index >> 32))
    return (bits >> 8).to(torch.float32) * 2.0**-24


class NoiseStream:
    """Where one run's (or one caller's) stochastic rounding takes its noise from: every call
    draws the key [seed, call number] and counts one more call. The count lives on the device
    of the data, so that drawing never waits for it."""

    def __init__(self, seed: int, calls: int = 0) -> None:
        if not 0 <= seed < 2**63 or calls < 0:
            raise ValueError(f"noise stream: seed {seed} not in [0, 2**63) or calls {calls} < 0")
        self._state = torch.tensor([seed, calls], dtype=torch.int64)
        self._next = torch.tensor([0, 1], dtype=torch.int64)  # one in-place add a call
        self._host: tuple[Tensor, np.ndarray] | None = None

    @classmethod
    def from_global_rng(cls) -> NoiseStream:
        """A stream seeded from torch's global generator (``torch.manual_seed`` fixes it)."""
        return cls(int(torch.randint(0, 2**31, (), dtype=torch.int64)))

    def draw(self, device: torch.device) -> Tensor:
        """The key of the next call, on ``device``."""
        if self._state.device != device:
            self._state, self._next = self._state.to(device), self._next.to(device)
        key = self._state.clone()
        self._state.add_(self._next)
        return key

    def draw_host(self) -> tuple[int, int]:
        """The next call's [seed, call] as ints, for a kernel called from the host: on the
        CPU, without a tensor op (they cost more than a small tensor's kernel)."""
        if not self._state.is_cpu:
            seed, call = self._state.tolist()
            self._state.add_(self._next)
            return seed, call
        state = self._host_state()
        seed, call = state.tolist()
        state[1] = call + 1
        return seed, call

    def _host_state(self) -> np.ndarray:
        """The CPU state's memory, as numpy sees it: kept while the state tensor is the same."""
        if self._host is None or self._host[0] is not self._state:
            self._host = (self._state, self._state.numpy())
        return self._host[1]

    @property
    def seed(self) -> int:
        return int(self._state[0])

    @property
    def calls(self) -> int:
        return int(self._state[1])

    def state(self) -> Tensor:
        """[seed, calls] on the CPU, as a checkpoint keeps it."""
        return self._state.cpu().clone()

    def set_state(self, state: Tensor) -> None:
        self._state = state.to(device=self._state.device, dtype=torch.int64).clone()
        self._next = self._next.to(self._state.device)
