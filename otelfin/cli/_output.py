"""JSON output shared by every ``--format json``: RFC 8259 JSON, never NaN or Infinity."""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["json_text"]


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def json_text(value: Any, indent: int | None = None) -> str:
    """``value`` as JSON; a non-finite float (NaN, +/-Infinity, which JSON has not) is null."""
    return json.dumps(_finite(value), indent=indent, allow_nan=False)
