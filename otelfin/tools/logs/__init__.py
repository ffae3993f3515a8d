"""Log files after the fact: ``otelfin logs validate`` and ``otelfin logs filter``.

:func:`validate_path` checks JSON-lines files (schema, registered error codes, no unmasked
card number) in constant memory; :func:`filter_lines` passes valid lines and dead-letters bad
ones with their reason, losing none. ``otelfin.logging`` re-exports these names lazily (its
module ``__getattr__``), so the logging pillar a service runs never imports this package.
"""

from __future__ import annotations

from otelfin.tools.logs._filter import FilterReport, filter_lines, write_metrics_file
from otelfin.tools.logs._validate import (
    DEFAULT_MAX_LINE_BYTES,
    FileReport,
    Violation,
    make_line_checker,
    open_input,
    validate_path,
)

__all__ = [
    "validate_path",
    "make_line_checker",
    "open_input",
    "FileReport",
    "Violation",
    "DEFAULT_MAX_LINE_BYTES",
    "filter_lines",
    "FilterReport",
    "write_metrics_file",
]
