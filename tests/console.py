"""The installed ``hbfp-dse`` console script, for tests that run it as users do."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest


def hbfp_dse() -> str:
    beside = Path(sys.executable).with_name("hbfp-dse")
    found = str(beside) if beside.exists() else shutil.which("hbfp-dse")
    if found is None:
        pytest.fail("the hbfp-dse console script is not installed")
    return found
