"""otelfin's version, from the installed distribution's metadata (core: anyone may import it)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("otelfin")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"
