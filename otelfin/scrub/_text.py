""":func:`scrub_text`: everything that must not leave, removed from one string."""

from __future__ import annotations

import re

from otelfin.scrub._options import ScrubOptions, current_options
from otelfin.scrub._pan import _SHAPE, _THIRTEEN, PAN_MIN, mask_pans
from otelfin.scrub._secrets import redact_pairs
from otelfin.scrub._url import scrub_url

__all__ = ["MIN_LEN", "scrub_text"]

#: The shortest string :func:`scrub_text` can change (``pin=1``); shorter ones skip it.
MIN_LEN = 5

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{1,15}://[^\s\"'<>]+")
# A token holding percent escapes (a request target in an access log, a form body): decoded
# and scanned as a URL, so %EF%BC%94... (full-width digits) or %34%31... cannot hide a card.
_ESCAPED = re.compile(r"[^\s\"'<>]*%[0-9A-Fa-f]{2}[^\s\"'<>]*")


def scrub_text(text: str, mask: str | None = None, *, options: ScrubOptions | None = None) -> str:
    """``text`` with card numbers masked, secret-keyed pairs (``password=...``) redacted and
    URLs scrubbed (userinfo, secret query parameters, percent-encoded card numbers).

    ``mask`` (``last4``/``first6last4``) overrides ``options.pan_mask``; ``options`` defaults
    to :func:`~otelfin.scrub.current_options`. Returns the very same object when nothing
    needed changing.
    """
    n = len(text)
    if n < MIN_LEN:
        return text
    pairs = "=" in text or ":" in text
    # The common case, at C speed: an ASCII line without escapes and without a run of 13
    # digit-or-separator characters holds no card number; with no pair either, nothing at all.
    no_pan = (
        "%" not in text
        and text.isascii()
        and (n < PAN_MIN or text.encode("ascii").translate(_SHAPE).find(_THIRTEEN) < 0)
    )
    if no_pan and not pairs:
        return text
    opts = options or current_options()
    mode = mask or opts.pan_mask
    # Card numbers first: a pair's value ends at a blank, so "pan=4111 1111 1111 1111"
    # redacted first would keep "1111 1111 1111" (middle digits) after "[REDACTED]". The
    # later steps never make a card number (redaction only replaces values; URLs are decoded
    # and masked by scrub_url itself), so one scan is enough. A line without a digit run
    # (``status=200 region=eu-west-1``) goes straight to the pairs.
    masked = text if no_pan else mask_pans(text, mode, opts.fingerprinter)
    out = masked
    if pairs:
        out = redact_pairs(out, opts)
        if "://" in out:
            out = _URL.sub(lambda m: scrub_url(m.group(), opts), out)
    if "%" in out:
        out = _ESCAPED.sub(lambda m: scrub_url(m.group(), opts), out)
    if out == text:
        return text
    return out
