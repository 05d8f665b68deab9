"""Where generated data lives: ``$JAXLOSS_CACHE_DIR``, else ``.cache/`` of a source checkout, else
``~/.cache/jaxloss``. Nothing there is committed; deleting it is always safe."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    env = os.environ.get("JAXLOSS_CACHE_DIR")
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file():
        return checkout / ".cache"
    return Path.home() / ".cache" / "jaxloss"
