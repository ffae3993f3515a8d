"""Secrets by key name: which fields' values are redacted whatever they hold.

A key is split into words (``_``, ``-``, ``.``, spaces, camelCase); it names a secret when one
word, or two or three adjacent words joined, is in :data:`SECRET_WORDS` (plus the options'
extra names). Whole words only: ``pinned``, ``passenger`` and ``company`` are not secrets.
An acquirer's approval code (``auth_code``, ``approval_code``, ISO 8583 DE38) is not a secret:
it is safe to log and needed to reconcile. The options' ``keep_keys`` take whole names off.
:func:`redact_pairs` applies the same test to ``key=value``, ``key: value`` and
``"key": "value"`` pairs inside free text (log messages, exception texts, query strings).
"""

from __future__ import annotations

import re

from otelfin.scrub._options import ScrubOptions, current_options, normalise_key
from otelfin.scrub._pan import PAN_MIN, mask_pans

__all__ = [
    "REDACTED",
    "SECRET_WORDS",
    "classify_key",
    "is_secret_key",
    "key_verdict",
    "redact_pairs",
]

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
        "securitycode",
        "csc",
        "cardverification",
        "otp",
        "totp",
        "hotp",
        "jwt",
        "bearer",
        "passcode",
        "pass",
        "ssn",
        "expiry",
        "expdate",
        "expirydate",
        "expirationdate",
        "signature",
        "privkey",
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
    opts = options or current_options()
    if opts.keep_keys and normalise_key(key) in opts.keep_keys:
        return False
    secret = _words_of(opts)
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
        if len(key) >= PAN_MIN:
            masked = mask_pans(key, opts.pan_mask, opts.fingerprinter)
            if masked is not key:
                result = masked
    if len(cache) >= _KEY_CACHE_MAX:
        cache.clear()  # keys are normally a small fixed set; a flood must not grow memory
    cache[key] = result
    return result


# key=value / key: value / "key": "value" in free text. The key is one identifier (letters,
# digits, _ . -), optionally quoted; at most three blanks around the separator. The value's
# extent is found by hand (quoted string, auth scheme + token, or up to a delimiter).
_PAIR = re.compile(r"""(?<![\w.\-])(["']?)([A-Za-z][\w.\-]{0,63})\1[ \t]{0,3}[:=][ \t]{0,3}""")
# The same keys, for a quick look first: one C-speed findall, then cached verdicts; the
# text is only walked pair by pair when one of its keys is a secret.
_KEYS = re.compile(r"""(?<![\w.\-])["']?([A-Za-z][\w.\-]{0,63})["']?[ \t]{0,3}[:=]""")
_SCHEMES = frozenset({"bearer", "basic", "digest", "token", "negotiate", "apikey", "hmac"})
_VALUE_END = re.compile(r"""[\s,;&)\]}>"'<]""")


def _value_end(text: str, pos: int) -> int:
    """Where the value starting at ``pos`` ends (exclusive)."""
    if pos >= len(text):
        return pos
    quote = text[pos]
    if quote in "\"'":
        i = pos + 1
        while i < len(text):
            ch = text[i]
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                return i + 1
            i += 1
        return len(text)
    m = _VALUE_END.search(text, pos)
    end = m.start() if m else len(text)
    # "Authorization: Bearer abc": the scheme and its token are one value.
    if text[pos:end].lower() in _SCHEMES and end < len(text) and text[end] == " ":
        m = _VALUE_END.search(text, end + 1)
        end = m.start() if m else len(text)
    return end


# Letters only, lower-cased, everything else a space: the words of ASCII text at C speed.
_LOWER = bytes((i | 0x20) if 65 <= i <= 90 or 97 <= i <= 122 else 32 for i in range(256))
# Letter case as bytes ("a", "A", " "), to spot a camelCase or HTTPHeader shift inside a word,
# whose parts are not separate words above (bytes search: a regex costs ~100x more here).
_CASE = bytes(97 if 97 <= i <= 122 else 65 if 65 <= i <= 90 else 32 for i in range(256))
# A memo, not state: the trigger words are a pure function of the secret names (the key).
_triggers: dict[frozenset[str], frozenset[bytes]] = {}


def _trigger_words(options: ScrubOptions) -> frozenset[bytes]:
    """Every word that can begin a secret key name: the secret names' letter-prefixes."""
    found = _triggers.get(options.secret_keys)
    if found is None:
        words: set[bytes] = set()
        for name in SECRET_WORDS | options.secret_keys:
            letters = "".join(c for c in name if c.isalpha()).encode("ascii", "ignore")
            words.update(letters[:i] for i in range(2, len(letters) + 1))
        found = frozenset(words)
        if len(_triggers) > 64:
            _triggers.clear()
        _triggers[options.secret_keys] = found
    return found


def _no_trigger(text: str, options: ScrubOptions) -> bool:
    """A cheap proof that no key in ``text`` can be a secret name: none of its words begins
    one. Only for ASCII text without case shifts inside words; the rest takes the full scan."""
    if not text.isascii():
        return False
    data = text.encode("ascii")
    case = data.translate(_CASE)
    if b"aA" in case or b"AAa" in case:
        return False
    words = data.translate(_LOWER).split()
    return _trigger_words(options).isdisjoint(words)


def redact_pairs(text: str, options: ScrubOptions | None = None) -> str:
    """``text`` with the value of every secret-keyed pair replaced by :data:`REDACTED`.

    The very same object when nothing was redacted.
    """
    if "=" not in text and ":" not in text:
        return text
    opts = options or current_options()
    if _no_trigger(text, opts):
        return text
    cache = opts.key_cache
    for key in _KEYS.findall(text):
        verdict = cache.get(key)
        if verdict is None:
            verdict = key_verdict(key, opts)
        if verdict is True or (type(verdict) is str and classify_key(verdict, opts)):
            break
    else:
        return text
    out: list[str] | None = None
    pos = 0
    scan = 0
    while True:
        m = _PAIR.search(text, scan)
        if m is None:
            break
        start = m.end()
        scan = start
        if not is_secret_key(m.group(2), opts) or text.startswith(REDACTED, start):
            continue
        end = _value_end(text, start)
        value = text[start:end]
        quoted = len(value) >= 2 and value[0] in "\"'" and value[-1] == value[0]
        inner = value[1:-1] if quoted else value
        if not inner or inner == REDACTED or inner in ("null", "None"):
            scan = max(end, start)
            continue
        if out is None:
            out = []
        out.append(text[pos:start])
        out.append(f"{value[0]}{REDACTED}{value[0]}" if quoted else REDACTED)
        pos = end
        scan = max(end, start + 1)
    if out is None:
        return text
    out.append(text[pos:])
    return "".join(out)
