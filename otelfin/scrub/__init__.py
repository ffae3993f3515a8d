"""otelfin's one card-number/secret scrubber, used by every pillar.

Logs, span names/attributes/events/links/status, baggage, metric label values, URLs and the
log validator all go through these functions, so what one channel masks, every channel masks.

* :func:`scrub_text` masks card numbers (PANs) in a string; :func:`find_pans` finds them.
* :func:`is_secret_key` says whether a field name holds a secret; :func:`scrub_value` walks
  any value (dicts, lists, dataclasses, ...) masking card numbers and redacting secrets.
* :class:`ScrubbingSpanProcessor` (as spans end) and :class:`ScrubbingSpanExporter` (as they
  leave) scrub spans; :func:`scrub_span` is the function both use.
* :class:`ScrubOptions` holds the settings; every function takes ``options=``, and
  :func:`configure` sets the process default (``otelfin.configure()`` does that for you).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from otelfin.scrub._options import PanMask, ScrubOptions, configure, current_options
from otelfin.scrub._pan import MIN_LEN, find_pans, luhn_valid, mask_digits, scrub_text
from otelfin.scrub._secrets import REDACTED, SECRET_WORDS, is_secret_key
from otelfin.scrub._spans import (
    ScrubbingSpanExporter,
    ScrubbingSpanProcessor,
    ending_hook_supported,
    install_span_scrubbing,
    scrub_span,
    scrubbed_as_they_end,
)
from otelfin.scrub._walk import scrub_attributes, scrub_value

if TYPE_CHECKING:
    from otelfin._config import Config

__all__ = [
    "MIN_LEN",
    "REDACTED",
    "SECRET_WORDS",
    "PanMask",
    "ScrubOptions",
    "ScrubbingSpanExporter",
    "ScrubbingSpanProcessor",
    "configure",
    "current_options",
    "ending_hook_supported",
    "find_pans",
    "install_span_scrubbing",
    "is_secret_key",
    "luhn_valid",
    "mask_digits",
    "options_from",
    "scrub_attributes",
    "scrub_span",
    "scrub_text",
    "scrub_value",
    "scrubbed_as_they_end",
]


def options_from(config: Config) -> ScrubOptions:
    """The :class:`ScrubOptions` an ``otelfin.configure()`` result asks for."""
    extra: Any = config.options.get("secret_keys") or ()
    if isinstance(extra, str):
        extra = (extra,)
    return ScrubOptions(pan_mask=config.pan_mask, secret_keys=frozenset(extra))


def _install(config: Config) -> None:
    """Make the service's settings the default (called first by ``otelfin.configure()``)."""
    configure(options_from(config))


def _uninstall() -> None:
    """Back to the defaults, and to export-time span scrubbing: spans still queued in a batch
    processor are flushed after the pillars are uninstalled and must be scrubbed too."""
    from otelfin.scrub import _spans

    _spans.reset()
    configure(None)
