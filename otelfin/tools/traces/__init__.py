"""Span files after the fact: ``otelfin traces show`` (and the demo's waterfall).

Reads OTLP/JSON span files (otelfin's JSONL exporter, the Collector's file exporter) and
draws one trace as a waterfall; ranks the hops that make slow traces slow
(``otelfin traces why``).
"""

from __future__ import annotations

from otelfin.tools.traces import _show, _why
from otelfin.tools.traces._show import *  # noqa: F403  (named once in _show.__all__)
from otelfin.tools.traces._why import *  # noqa: F403  (named once in _why.__all__)

__all__ = [*_show.__all__]
__all__ += _why.__all__
