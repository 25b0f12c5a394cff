"""Where hbfp-dse keeps what it can rebuild: ``$HBFP_DSE_CACHE`` (``off``: nowhere), else
``$XDG_CACHE_HOME/hbfp-dse`` or ``~/.cache/hbfp-dse``."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "HBFP_DSE_CACHE"


def cache_dir() -> Path | None:
    given = os.environ.get(CACHE_ENV)
    if given == "off":
        return None
    if given:
        return Path(given)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hbfp-dse"
