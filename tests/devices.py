"""The devices exactness tests run on: the CPU, and CUDA where there is one (skipped, and so
reported, where there is not)."""

from __future__ import annotations

import pytest
import torch

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here"),
    ),
]
