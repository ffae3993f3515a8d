"""otelfin's one card-number/secret scrubber, used by every pillar.

Logs, span names/attributes/events/links/status, baggage, metric label values, URLs and the
log validator all go through these functions, so what one channel masks, every channel masks.

* :func:`scrub_text` masks card numbers (PANs) in a string; :func:`find_pans` finds them.
* :func:`scrub_url` cleans a URL (userinfo, secret query parameters, encoded card numbers).
* :func:`fingerprint` gives a card's keyed fingerprint token (``fp_`` + 16 hex), the one the
  scrubber writes after each masked number when a key is configured.
* :func:`is_secret_key` says whether a field name holds a secret; :func:`scrub_value` walks
  any value (dicts, lists, dataclasses, ...) masking card numbers and redacting secrets.
* :class:`ScrubbingSpanProcessor` (as spans end) and :class:`ScrubbingSpanExporter` (as they
  leave) scrub spans; :func:`scrub_span` is the function both use.
* :class:`ScrubOptions` holds the settings; every function takes ``options=``, and
  :func:`configure` sets the process default (``otelfin.configure()`` does that for you).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from otelfin import _internal
from otelfin.scrub import _spans as _spans_module
from otelfin.scrub._fingerprint import TOKEN_PREFIX, Fingerprinter
from otelfin.scrub._iin import BRANDS, brand_of
from otelfin.scrub._options import PanMask, ScrubOptions, configure, current_options
from otelfin.scrub._pan import (
    PAN_MIN,
    find_pans,
    luhn_valid,
    mask_digits,
    mask_pans,
    may_hold_pan,
    pan_suspect_lines,
)
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

# Containment (otelfin._internal, below this package) masks what it logs with this scrubber.
_internal.mask_with(scrub_text)

if TYPE_CHECKING:
    from otelfin.pillar import Config, Installed, Tracing

__all__ = [
    "BRANDS",
    "MIN_LEN",
    "OPTION_ROWS",
    "PAN_MIN",
    "REDACTED",
    "SECRET_WORDS",
    "TOKEN_PREFIX",
    "Fingerprinter",
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
    "fingerprint",
    "fingerprint_key_from",
    "fingerprint_key_id",
    "is_secret_key",
    "luhn_valid",
    "mask_digits",
    "mask_pans",
    "may_hold_pan",
    "pan_suspect_lines",
    "options_from",
    "options_from_values",
    "redact_pairs",
    "scrub_attributes",
    "scrub_query",
    "scrub_span",
    "scrub_text",
    "scrub_url",
    "scrub_value",
    "scrubbed_as_they_end",
]


#: The settings rows the scrubber's options are made from (``pan_mask`` and these).
OPTION_ROWS = (
    "pan_mask",
    "secret_keys",
    "scrub_secret_keys",
    "scrub_keep_keys",
    "pan_fingerprint_key",
    "pan_fingerprint_key_file",
)


def options_from(config: Config) -> ScrubOptions:
    """The :class:`ScrubOptions` an ``otelfin.configure()`` result asks for.

    Raises ValueError when the fingerprint key file cannot be read or is empty.
    """
    return options_from_values({**config.options, "pan_mask": config.pan_mask})


def options_from_values(options: Mapping[str, Any]) -> ScrubOptions:
    """The :class:`ScrubOptions` for resolved settings values (the rows in
    :data:`OPTION_ROWS`; missing ones take their defaults). Used by ``configure()`` and by the
    offline tools, which read the same settings.
    """
    extra: list[str] = []
    for name in ("secret_keys", "scrub_secret_keys"):
        value: Any = options.get(name) or ()
        extra.extend((value,) if isinstance(value, str) else value)
    keep: Any = options.get("scrub_keep_keys") or ()
    return ScrubOptions(
        pan_mask=options.get("pan_mask") or "last4",
        secret_keys=frozenset(extra),
        keep_keys=frozenset((keep,) if isinstance(keep, str) else keep),
        fingerprint_key=fingerprint_key_from(
            options.get("pan_fingerprint_key"), options.get("pan_fingerprint_key_file")
        ),
    )


def fingerprint_key_from(key: str | None, key_file: str | None) -> str | bytes | None:
    """The fingerprint key: ``key`` itself, else the first line of ``key_file``, else None.

    Raises ValueError (naming the file, never the key) when the file cannot be read or its
    first line is empty.
    """
    if key:
        return key
    if not key_file:
        return None
    try:
        with open(key_file, "rb") as handle:
            first = handle.readline().strip()
    except OSError as exc:
        raise ValueError(
            f"pan_fingerprint_key_file {key_file!r} cannot be read: {exc.strerror}"
        ) from None
    if not first:
        raise ValueError(f"pan_fingerprint_key_file {key_file!r} holds no key on its first line")
    return first


def fingerprint(
    card_number: str, *, key: str | bytes | None = None, options: ScrubOptions | None = None
) -> str | None:
    """The fingerprint token (``fp_`` + 16 lowercase hex) the scrubber writes after
    ``card_number`` when masking it, or None when no fingerprint key is configured.

    ``card_number`` may come in any shape the scrubber masks (``4111 1111 1111 1111``,
    ``4111-1111-1111-1111``, full-width digits): the token depends on the digits only.
    ``key`` computes the token under another key (the previous one, after a rotation);
    ``options`` defaults to the process default (``otelfin.configure()`` sets it from
    ``pan_fingerprint_key`` / ``OTELFIN_PAN_FINGERPRINT_KEY``). Never a plain hash: without a
    key there is no token.

    Raises ValueError when ``card_number`` is not a card number (13-19 digits a brand issues,
    Luhn-valid).
    """
    if not isinstance(card_number, str):
        raise ValueError(f"card_number must be a string, not {type(card_number).__name__}")
    digits = "".join(str(unicodedata.decimal(ch)) for ch in card_number if ch.isdecimal())
    if not (PAN_MIN <= len(digits) <= 19 and brand_of(digits) and luhn_valid(digits)):
        raise ValueError("not a card number (13-19 digits of a card brand, Luhn-valid)")
    if key is not None:
        return Fingerprinter(key)(digits)
    maker = (options or current_options()).fingerprinter
    return maker(digits) if maker is not None else None


def fingerprint_key_id(options: ScrubOptions | None = None) -> str | None:
    """A name for the configured fingerprint key that reveals nothing about it (``k`` + 8
    hex), or None without a key: logs made under one key can be told from the next one's."""
    maker = (options or current_options()).fingerprinter
    return maker.key_id if maker is not None else None


def install_pillar(config: Config, tracing: Tracing) -> Installed:
    """Make the service's settings the default and choose where spans are scrubbed (called
    first by ``otelfin.configure()``); returns the processor config adds to the provider.

    ``scrub_all_spans="auto"``: when otelfin reuses an application's provider, whose own
    processors otelfin's exporter cannot cover, spans are scrubbed as they end (on the ending
    thread, about 1.5 us for a typical span) so every processor sees them masked; on a
    provider otelfin created, scrubbing stays off the request path, in the exporter.
    ``True``/``False`` force the first/second way.
    """
    from otelfin.pillar import Installed

    # Built once: the process default (for scrub calls without ``options=``) and what config
    # hands to the pillars after this one (Tracing.scrub_options).
    options = configure(options_from(config))
    mode = config.options["scrub_all_spans"]
    provider = tracing.provider
    wanted = (provider is not None and not tracing.owns_provider) if mode == "auto" else mode
    processor = _spans_module.use_ending_scrubber(
        provider, as_they_end=bool(wanted), options=options
    )
    return Installed(
        span_processors=(processor,) if processor is not None else (), scrub_options=options
    )


def uninstall_pillar() -> None:
    """Back to the defaults, and to export-time span scrubbing: spans still queued in a batch
    processor are flushed after the pillars are uninstalled and must be scrubbed too."""
    from otelfin.scrub import _spans

    _spans.reset()
    configure(None)
