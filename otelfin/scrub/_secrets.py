"""Secrets by key name: which fields' values are redacted whatever they hold."""

from __future__ import annotations

import re

from otelfin.scrub._options import ScrubOptions, current_options
from otelfin.scrub._pan import MIN_LEN, scrub_text

__all__ = ["REDACTED", "SECRET_WORDS", "is_secret_key", "key_verdict", "classify_key"]

#: What a secret value is replaced with.
REDACTED = "[REDACTED]"

SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "secret",
        "token",
        "apikey",
        "authorization",
        "auth_token",
        "cookie",
        "setcookie",
        "cvv",
        "cvv2",
        "cvc",
        "cvc2",
        "cvn",
        "pin",
        "pinblock",
        "pan",
        "cardnumber",
        "creditcard",
        "ccnumber",
        "privatekey",
        "clientsecret",
        "credentials",
        "credential",
        "sessionid",
        "track1",
        "track2",
        "trackdata",
        "iban",
    }
)
_KEY_CACHE_MAX = 4096
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def _words_of(options: ScrubOptions) -> frozenset[str]:
    extra = options.secret_keys
    return SECRET_WORDS | extra if extra else SECRET_WORDS


def classify_key(key: str, options: ScrubOptions | None = None) -> bool:
    """True when ``key`` names a secret (no cache, no card-number check: see is_secret_key)."""
    words = [w.lower() for w in _WORD.findall(key)]
    if not words:
        return False
    secret = _words_of(options or current_options())
    if "".join(words) in secret:
        return True
    for i, w in enumerate(words):
        if w in secret:
            return True
        # Two or three adjacent words: api_key, card_number, X-Api-Key, private.key, set-cookie.
        if i + 1 < len(words):
            pair = w + words[i + 1]
            if pair in secret:
                return True
            if i + 2 < len(words) and pair + words[i + 2] in secret:
                return True
    return False


def is_secret_key(key: str, options: ScrubOptions | None = None) -> bool:
    """True when a field named ``key`` holds a secret whose value must be redacted.

    The key is split into words (``_``, ``-``, ``.``, spaces and camelCase); it is secret when
    a word, or two or three adjacent words joined, is a secret name: ``password``,
    ``db_password``, ``X-Api-Key``, ``cardNumber``, ``http.request.header.authorization``.
    Whole words only, so ``pinned``, ``spin`` and ``company`` are not secrets.
    """
    opts = options or current_options()
    cached = opts.key_cache.get(key)
    if cached is None:
        cached = key_verdict(key, opts)
    if type(cached) is str:  # a key holding a card number: judged by its masked form
        return classify_key(cached, opts)
    return cached is True


def key_verdict(key: str, options: ScrubOptions | None = None) -> bool | str:
    """True for a secret key, False for a plain one, or the key with its card number masked
    (a key can hold one too: ``card.4111111111111111``). Cached on the options object."""
    opts = options or current_options()
    cache = opts.key_cache
    cached = cache.get(key)
    if cached is not None:
        return cached
    result: bool | str = False
    if isinstance(key, str):
        result = classify_key(key, opts)
        if len(key) >= MIN_LEN:
            masked = scrub_text(key, options=opts)
            if masked is not key:
                result = masked
    if len(cache) >= _KEY_CACHE_MAX:
        cache.clear()  # keys are normally a small fixed set; a flood must not grow memory
    cache[key] = result
    return result
