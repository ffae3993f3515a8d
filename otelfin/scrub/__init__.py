"""otelfin's one card-number/secret scrubber, used by every pillar.

Logs, span names/attributes/events/links/status, baggage, metric label values, URLs and the
log validator all go through these functions, so what one channel masks, every channel masks.

* :func:`scrub_text` masks card numbers (PANs) in a string; :func:`find_pans` finds them.
* :func:`scrub_url` cleans a URL (userinfo, secret query parameters, encoded card numbers).
* :func:`is_secret_key` says whether a field name holds a secret; :func:`scrub_value` walks
  any value (dicts, lists, dataclasses, ...) masking card numbers and redacting secrets.
* :class:`ScrubbingSpanProcessor` (as spans end) and :class:`ScrubbingSpanExporter` (as they
  leave) scrub spans; :func:`scrub_span` is the function both use.
* :class:`ScrubOptions` holds the settings; every function takes ``options=``, and
  :func:`configure` sets the process default (``otelfin.configure()`` does that for you).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from otelfin.scrub import _spans as _spans_module
from otelfin.scrub._iin import BRANDS, brand_of
from otelfin.scrub._options import PanMask, ScrubOptions, configure, current_options
from otelfin.scrub._pan import PAN_MIN, find_pans, luhn_valid, mask_digits, mask_pans, may_hold_pan
from otelfin.scrub._secrets import REDACTED, SECRET_WORDS, is_secret_key, redact_pairs
from otelfin.scrub._spans import (
    ScrubbingSpanExporter,
    ScrubbingSpanProcessor,
    ending_hook_supported,
    install_span_scrubbing,
    scrub_span,
    scrubbed_as_they_end,
)
from otelfin.scrub._text import MIN_LEN, scrub_text
from otelfin.scrub._url import scrub_query, scrub_url
from otelfin.scrub._walk import scrub_attributes, scrub_value

if TYPE_CHECKING:
    from otelfin import Config
    from otelfin._pillar import Installed, Tracing

__all__ = [
    "BRANDS",
    "MIN_LEN",
    "PAN_MIN",
    "REDACTED",
    "SECRET_WORDS",
    "PanMask",
    "ScrubOptions",
    "ScrubbingSpanExporter",
    "ScrubbingSpanProcessor",
    "configure",
    "current_options",
    "brand_of",
    "ending_hook_supported",
    "find_pans",
    "install_span_scrubbing",
    "is_secret_key",
    "luhn_valid",
    "mask_digits",
    "mask_pans",
    "may_hold_pan",
    "options_from",
    "redact_pairs",
    "scrub_attributes",
    "scrub_query",
    "scrub_span",
    "scrub_text",
    "scrub_url",
    "scrub_value",
    "scrubbed_as_they_end",
]


def options_from(config: Config) -> ScrubOptions:
    """The :class:`ScrubOptions` an ``otelfin.configure()`` result asks for."""
    extra: Any = config.options["secret_keys"] or ()
    if isinstance(extra, str):
        extra = (extra,)
    return ScrubOptions(pan_mask=config.pan_mask, secret_keys=frozenset(extra))


def install_pillar(config: Config, tracing: Tracing) -> Installed | None:
    """Make the service's settings the default and choose where spans are scrubbed (called
    first by ``otelfin.configure()``); returns the processor config adds to the provider.

    ``scrub_all_spans="auto"``: when otelfin reuses an application's provider, whose own
    processors otelfin's exporter cannot cover, spans are scrubbed as they end (on the ending
    thread, about 1.5 us for a typical span) so every processor sees them masked; on a
    provider otelfin created, scrubbing stays off the request path, in the exporter.
    ``True``/``False`` force the first/second way.
    """
    from otelfin._pillar import Installed

    configure(options_from(config))
    mode = config.options["scrub_all_spans"]
    provider = tracing.provider
    wanted = (provider is not None and not tracing.owns_provider) if mode == "auto" else mode
    processor = _spans_module.use_ending_scrubber(provider, as_they_end=bool(wanted))
    return Installed(span_processors=(processor,)) if processor is not None else None


def uninstall_pillar() -> None:
    """Back to the defaults, and to export-time span scrubbing: spans still queued in a batch
    processor are flushed after the pillars are uninstalled and must be scrubbed too."""
    from otelfin.scrub import _spans

    _spans.reset()
    configure(None)
