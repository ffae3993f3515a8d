"""Keyed card fingerprints: ``fp_`` + 16 lowercase hex of HMAC-SHA256(key, digits).

PCI DSS 4.0 requirement 3.5.1.1 accepts keyed cryptographic hashes of a card number (the key
managed like any other secret); a plain hash is not: the card-number space is small enough
(an issuer's BIN, 6-9 unknown digits and the Luhn digit) to be searched in minutes. So there is
no token without a key, and the token is an HMAC of the card's digits, written in ASCII
whatever the shape they arrived in (``4111 1111 1111 1111``, full-width digits, percent
escapes): the same card gives the same token in every channel, and a different key gives an
unrelated one.

The token is truncated to 64 bits: enough to tell the cards of one service apart (two
different cards share a token with probability about n^2 / 2^65 among n cards: below one in a
million up to 6 million cards), short enough to read. It is a search key, not a proof.

Rotation: a new key gives new tokens; tokens made under the old key stay searchable by
computing them with the old key (:func:`fingerprint` takes ``key=``). :func:`key_id` names a
key without revealing it (``k`` + 8 hex of an HMAC of a fixed label), and otelfin's audit
trail records it at start, so each period of logs can be matched to the key that made its
tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata

__all__ = ["Fingerprinter", "TOKEN_PREFIX", "key_bytes"]

#: Every fingerprint token starts with this; 16 lowercase hex digits follow.
TOKEN_PREFIX = "fp_"
_KEY_ID_LABEL = b"otelfin pan fingerprint key id v1"


def key_bytes(key: str | bytes) -> bytes:
    """The key as bytes (text is UTF-8); ValueError when it is empty."""
    data = key.encode("utf-8", "surrogateescape") if isinstance(key, str) else bytes(key)
    if not data:
        raise ValueError("the card fingerprint key is empty")
    return data


class Fingerprinter:
    """Makes the fingerprint token of card-number digits under one key (thread-safe)."""

    __slots__ = ("_base", "key_id")

    def __init__(self, key: str | bytes) -> None:
        data = key_bytes(key)
        self._base = hmac.new(data, digestmod=hashlib.sha256)
        #: A name for the key that reveals nothing about it: ``k`` + 8 hex.
        self.key_id = "k" + hmac.new(data, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:8]

    def __call__(self, digits: str) -> str:
        """``fp_`` + 16 hex for the card number ``digits`` (any Unicode decimal digits)."""
        if not digits.isascii():
            digits = "".join(str(unicodedata.decimal(ch)) for ch in digits)
        mac = self._base.copy()
        mac.update(digits.encode("ascii"))
        return TOKEN_PREFIX + mac.hexdigest()[:16]

    def __repr__(self) -> str:
        return f"Fingerprinter(key_id={self.key_id!r})"  # never the key
