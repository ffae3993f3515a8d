"""Former home of the offline metrics tools, kept so ``otelfin.metrics.offline`` still imports.

The p99 report, bucket design from histogram counts, rules and dashboards live in
:mod:`otelfin.tools.metrics`, the offline wing the runtime never imports. Nothing in the
metrics pillar imports this module: only a caller that names it pays for the tools.
"""

from __future__ import annotations

from otelfin.tools.metrics import *  # noqa: F403  (a pure alias of the moved package)
from otelfin.tools.metrics import __all__ as __all__
