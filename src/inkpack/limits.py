"""Size limits that a user may raise through the environment (``INKPACK_MAX_*``)."""

from __future__ import annotations

import os

from inkpack.errors import ConfigError


def env_limit(name: str, default: int, unit: str) -> int:
    """``int(os.environ[name])`` when set, else ``default``; anything but a positive whole number
    is a ``ConfigError`` naming the variable."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{name}={raw!r}: must be a positive whole number of {unit}")
    return value
