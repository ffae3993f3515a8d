"""URLs: userinfo, secret-named query parameters and card numbers in any component.

HTTP client and server spans carry the URL whole (``http.url``, ``url.full``,
``http.target``, ``url.query``); a query string such as ``cvv=123&enc=4111%201111...``
needs more than the text scanner: parameter names are compared after percent-decoding, and
values are percent-decoded before the card-number scan. Parsing uses ``urllib.parse``; a
URL it rejects (a bad port, an unbalanced IPv6 bracket) is scanned as plain text instead.
"""

from __future__ import annotations

from urllib.parse import quote, unquote, unquote_plus, urlsplit, urlunsplit

from otelfin.scrub._options import ScrubOptions, current_options
from otelfin.scrub._pan import mask_pans
from otelfin.scrub._secrets import REDACTED, is_secret_key, redact_pairs

__all__ = ["scrub_query", "scrub_url"]

_SAFE = "/:@!$'()*+,;=-._~"


def _clean(text: str, opts: ScrubOptions) -> str:
    return redact_pairs(mask_pans(text, opts.pan_mask, opts.fingerprinter), opts)


def scrub_query(query: str, options: ScrubOptions | None = None) -> str:
    """A query string (``a=1&b=2``, no ``?``) with secret-named parameters redacted and card
    numbers masked in the decoded values; the very same object when nothing changed."""
    if not query:
        return query
    opts = options or current_options()
    parts = query.split("&")
    changed = False
    for i, part in enumerate(parts):
        name, eq, value = part.partition("=")
        if eq and value and is_secret_key(unquote_plus(name), opts):
            if value != REDACTED:
                parts[i] = f"{name}={REDACTED}"
                changed = True
            continue
        decoded = unquote_plus(part) if "%" in part or "+" in part else part
        cleaned = _clean(decoded, opts)
        if cleaned is not decoded and cleaned != decoded:
            n, e, v = cleaned.partition("=")
            parts[i] = quote(n, safe=_SAFE + "[]") + e + quote(v, safe=_SAFE + "[]")
            changed = True
    return "&".join(parts) if changed else query


def scrub_url(url: str, options: ScrubOptions | None = None) -> str:
    """``url`` with its userinfo redacted, secret-named query (and fragment) parameters
    redacted and card numbers masked in every component, percent-decoded first.

    Works on full URLs and on targets (``/pay?card=...``); returns the very same object when
    nothing changed.
    """
    if not url:
        return url
    opts = options or current_options()
    try:
        scheme, netloc, path, query, fragment = urlsplit(url)
    except ValueError:
        return _clean(url, opts)
    changed = False
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
        changed = True
    decoded_path = unquote(path) if "%" in path else path
    clean_path = _clean(decoded_path, opts)
    if clean_path is not decoded_path and clean_path != decoded_path:
        path = quote(clean_path, safe=_SAFE + "[]")
        changed = True
    clean_query = scrub_query(query, opts)
    if clean_query is not query:
        query = clean_query
        changed = True
    if fragment:
        clean_fragment = scrub_query(fragment, opts)
        if clean_fragment is not fragment:
            fragment = clean_fragment
            changed = True
    if not changed:
        return url
    rebuilt = urlunsplit((scheme, netloc, path, query, fragment))
    if url.endswith("?") and not rebuilt.endswith("?"):
        rebuilt += "?"
    return rebuilt
