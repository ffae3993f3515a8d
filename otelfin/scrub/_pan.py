"""The card-number (PAN) scanner: :func:`find_pans` finds, :func:`mask_pans` masks.

The log validator (``otelfin logs validate``) uses :func:`find_pans`, which shares the scanner
with the scrubber: the validator never flags what the scrubber keeps.

What counts as a card number
    Digits (any Unicode decimal digits: ASCII, full-width, Arabic-Indic, ...) in *groups*.
    Inside a run, groups are joined by one to three separators: space, tab, no-break and
    other Unicode spaces, dashes (ASCII and Unicode), ``.``, ``_``, ``/``, ``+`` and their
    percent-encoded forms (``%20``, ``%2D``, ...). A card number is

    * one group of 13-19 digits (``4111111111111111``, ``ref4111111111111111``,
      ``4111111111111111USD``, ``4111111111111111.00``), or
    * consecutive groups of 3-6 digits each, 13-19 digits in all (``4111 1111 1111 1111``,
      ``3782-822463-10005``, ``4111.1111.1111.1111``, ``4111\\u00a01111 ...``), the last of
      which may be shorter or longer: whatever a formatter leaves of an odd length, one or
      two digits (``4222 2222 2222 2``, ``3056 9309 0259 04``: a generic 4-4-4-4 formatter on
      13 and 14 digits) or 7-9 after at least six (4-4-4-7 for 19 digits, 4-6-9: the gaps of
      common card-form libraries); ``450000 1764067633123`` (a number, then an epoch in ms)
      is not a card,

    whose digits a card brand issues (prefix and length from the table in ``_iin``) and pass
    the Luhn check. A group of 7 or more digits never starts a grouped number and nothing
    follows it: ``ord-20261125-000004`` (8 + 6 digits) is an order id, whatever its Luhn sum.

What is never a card number
    Digits inside an all-hex word (trace and span ids, hashes, UUID parts: ``4bf92f35...``),
    digits glued to an ``X`` (an already masked number), the digits of a fraction
    (``0.4111111111111111``: a group right after ``<digit>.`` cannot start a card number),
    a valid IBAN (ISO 13616 mod-97 check), runs longer than 19 digits, and prefixes or
    lengths no brand issues (19-digit epoch-nanosecond timestamps start with 1).

How it is masked
    ``last4`` (default): ``XXXXXXXXXXXX1111``; ``first6last4``: ``411111XXXXXX1111``; the
    separators are dropped and the digits written in ASCII. The masked token glues its kept
    digits to ``X``, which makes them opaque: scrubbing is idempotent and :func:`find_pans`
    of scrubbed text is empty. With a fingerprint key the masked number is followed by a
    space and its token (``XXXXXXXXXXXX1111 fp_63935b550453c14f``); a token whose 16 hex
    digits happen to be all decimal is recognised by what precedes it and left alone.

Why hand-written, and why linear
    No library implements this definition. A translate-and-find pre-filter at C speed skips
    text without 13 digit-or-separator characters in a row (the common case, ~0.3 us for a
    200-character line). The run pattern matches groups of 3+ digits joined by 1-3
    separators; its pieces are disjoint character classes, so it never backtracks more than a
    few characters. Windows are at most six groups of at most 19 digits, examined through a
    bounded buffer, so time is linear and memory constant in the input (a 10 MB ``"1 1 1 ..."``
    string is a benchmark case).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator

from otelfin.scrub._iin import brand_of

__all__ = [
    "PAN_MIN",
    "find_pans",
    "luhn_valid",
    "mask_digits",
    "mask_pans",
    "may_hold_pan",
    "pan_suspect_lines",
]

#: The fewest digits a card number has: text with fewer digits skips the scan.
PAN_MIN = 13
_PAN_MAX = 19

# Separators between digit groups. Unicode spaces, dashes and invisible joiners as well as the
# ASCII ones, and the percent-encoded forms a URL or form body uses.
_SEP_CHARS = (
    " \t\\-._/+"
    "\u00a0\u00ad\u1680\u2000-\u200d\u2010-\u2015\u202f\u205f\u2060\u2212\u3000"
    "\ufe58\ufe63\ufeff\uff0d\uff0e\uff0f\uff3f"
)
_SEP = rf"(?:[{_SEP_CHARS}]|%(?:2[0bBdDeEfF]|5[fF]|09|[cC]2%[aA]0|[eE]2%80%(?:[aA][fF]|9[0-5])))"
# What may stand between two groups of one card number: one to three separators.
_GAP = re.compile(rf"{_SEP}{{1,3}}")
_SEP_SET = frozenset(" \t-._/+\u00a0\u202f\u2007\u2009\u2013\u2014\u2011\u3000")
# Digit groups of 3+ digits (smaller ones never belong to a card number); a percent escape
# (%20) is a separator, not digits, so it is matched first and skipped.
_GROUP = re.compile(r"%[0-9A-Fa-f]{2}|\d{3,}")
_DIGITS13 = re.compile(r"(?:\d\D*){13}")
# ASCII pre-filter: digits and ASCII separators become "0", everything else "x".
_SHAPE = bytes(48 if chr(i) in "0123456789 \t-._/+" else 120 for i in range(256))
_THIRTEEN = b"0" * PAN_MIN
# Digits only: where a group of three or more digits starts, found at C speed.
_DIGIT_SHAPE = bytes(48 if chr(i) in "0123456789" else 120 for i in range(256))
_HEX = frozenset("0123456789abcdefABCDEF")
#: How far a glued word is read to tell whether it is all hex (see :func:`_side`).
_WORD_SCAN = 256
_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?")
# Luhn: each digit's contribution when it is not doubled / when it is doubled.
_DOUBLE_TABLE = bytes.maketrans(b"0123456789", b"0246813579")

_Found = list[tuple[int, int, str]]


def luhn_valid(digits: str | bytes) -> bool:
    """True when a string of ASCII digits passes the Luhn (mod 10) check."""
    data = digits.encode("ascii") if isinstance(digits, str) else digits
    # Sum the undoubled digits and the doubled ones (mapped through the table) at C speed.
    total = sum(data[-1::-2]) + sum(data[-2::-2].translate(_DOUBLE_TABLE)) - 48 * len(data)
    return total % 10 == 0


def _ascii_digits(group: str) -> str:
    if group.isascii():
        return group
    return "".join(str(unicodedata.decimal(ch)) for ch in group)


def may_hold_pan(text: str | bytes) -> bool:
    """A fast necessary condition: False means ``text`` holds no card number.

    For ASCII text: 13 digit-or-separator characters in a row; otherwise (non-ASCII, or
    percent-encoding) 13 decimal digits anywhere.
    """
    if len(text) < PAN_MIN:
        return False
    if isinstance(text, bytes):
        if text.isascii() and b"%" not in text:
            return text.translate(_SHAPE).find(_THIRTEEN) >= 0
        text = text.decode("utf-8", "replace")
    elif text.isascii() and "%" not in text:
        return text.encode("ascii").translate(_SHAPE).find(_THIRTEEN) >= 0
    return _DIGITS13.search(text) is not None


def pan_suspect_lines(block: bytes) -> list[int] | None:
    """The lines of ``block`` (split at ``\\n``) that :func:`may_hold_pan` passes, by index
    and in order, found with one translation of the whole block instead of one per line.

    None when the block is not plain ASCII (non-ASCII or percent-encoded text): ask
    :func:`may_hold_pan` line by line then. A newline is never a digit or separator, so a run
    never spans two lines and a line is listed exactly when ``may_hold_pan(line)`` is True.
    """
    if not block.isascii() or b"%" in block:
        return None
    shape = block.translate(_SHAPE)
    found: list[int] = []
    line = start = 0
    pos = shape.find(_THIRTEEN)
    while pos >= 0:
        line += block.count(b"\n", start, pos)
        found.append(line)
        start = block.find(b"\n", pos) + 1
        if not start:
            break
        line += 1
        pos = shape.find(_THIRTEEN, start)
    return found


def _groups(text: str, ascii_shape: tuple[bytes, bytes] | None = None) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of every group of three or more digits that may be part of a card
    number, in order. ASCII text is pre-filtered at C speed: only stretches with 13 digit or
    separator characters in a row are looked at, and inside them ``bytes.find`` jumps from
    group to group (a 10 MB ``"1 1 1 ..."`` has none and costs two translations).

    ``ascii_shape``: ``text`` as bytes and their ``_SHAPE`` translation, when the caller (an
    ASCII line without ``%``) already has them."""
    if ascii_shape is not None or (text.isascii() and "%" not in text):
        if ascii_shape is not None:
            data, shape = ascii_shape
        else:
            data = text.encode("ascii")
            shape = data.translate(_SHAPE)
        pos = shape.find(_THIRTEEN)
        if pos < 0:
            return
        digits = data.translate(_DIGIT_SHAPE)
        while pos >= 0:
            stop = shape.find(b"x", pos + PAN_MIN)
            if stop < 0:
                stop = len(text)
            at = digits.find(b"000", pos, stop)
            while at >= 0:
                end = digits.find(b"x", at, stop)
                if end < 0:
                    end = stop
                yield at, end
                at = digits.find(b"000", end, stop)
            pos = shape.find(_THIRTEEN, stop)
    elif _DIGITS13.search(text) is not None:
        for m in _GROUP.finditer(text):
            if text[m.start()] != "%":
                yield m.span()


def _side(text: str, i: int, step: int) -> bool:
    """The letters and digits touching a group at ``i`` (read in direction ``step``) are all
    hex: the group is part of a hex word (a trace id, a hash). Reading stops at the first
    letter that is not hex, and after ``_WORD_SCAN`` characters: a longer all-hex run counts
    as a hex word, which keeps the scan linear on adversarial input."""
    n = 0
    size = len(text)
    while 0 <= i < size and text[i].isalnum():
        if text[i] not in _HEX:
            return False
        n += 1
        if n >= _WORD_SCAN:
            return True
        i += step
    return True


def _iban_covers(text: str, start: int, end: int) -> bool:
    """``[start, end)`` lies inside a valid IBAN (ISO 13616: mod 97 == 1)."""
    lo = max(0, start - 40)
    for m in _IBAN.finditer(text, lo, min(len(text), end + 40)):
        if m.start() <= start and m.end() >= end:
            compact = m.group().replace(" ", "")
            moved = compact[4:] + compact[:4]
            number = "".join(str(int(ch, 36)) for ch in moved)
            if int(number) % 97 == 1:
                return True
    return False


def _is_card(digits: str) -> bool:
    return brand_of(digits) is not None and luhn_valid(digits)


# One group in the look-ahead: start, end, ascii digits, joined to the previous group,
# opaque (part of a hex word or a masked number), glued to a letter on the right.
_Group = tuple[int, int, str, bool, bool, bool]


def _joined(text: str, end: int, start: int) -> bool:
    """The text between two groups is one to three separators."""
    if start - end == 1:
        return text[end] in _SEP_SET or _GAP.fullmatch(text, end, start) is not None
    return 1 < start - end <= 12 and _GAP.fullmatch(text, end, start) is not None


def _scan(text: str, ascii_shape: tuple[bytes, bytes] | None = None) -> _Found:
    """``(start, end, ascii digits)`` of every card number in ``text``.

    Groups arrive in order; a look-ahead of at most seven holds what a window (one group of
    13-19 digits, or up to six joined groups of 3-6 digits) needs, so memory stays constant.
    """
    out: _Found = []
    buf: list[_Group] = []
    size = len(text)
    prev_end = -10
    for a, b in _groups(text, ascii_shape):
        width = b - a
        long_group = 6 < width < PAN_MIN
        if width > _PAN_MAX or (long_group and not buf):
            # 20+ digits, or 7-12 digits with no window open: never part of a card number.
            while buf:
                _take(text, buf, out)
            prev_end = b
            continue
        # The letter ending a percent escape (%2D) is a separator's, not glue.
        glued_left = a > 0 and text[a - 1].isalpha() and not (a >= 3 and text[a - 3] == "%")
        glued_right = b < size and text[b].isalpha()
        opaque = False
        if glued_left or glued_right:
            opaque = _opaque(text, a, b, glued_left, glued_right)
        joined = not glued_left and _joined(text, prev_end, a) if prev_end >= 0 else False
        prev_end = b
        digits = _ascii_digits(text[a:b])
        if long_group:
            # 7-12 digits end any window; joined to it, 7-9 of them may be its last group (a
            # formatter's 4-4-4-7 or 4-6-9), never a first or middle one.
            if joined:
                buf.append((a, b, digits, True, opaque, glued_right))
            while buf:
                _take(text, buf, out)
            continue
        if not joined:
            while buf:
                _take(text, buf, out)
        buf.append((a, b, digits, joined, opaque, glued_right))
        while len(buf) >= 7:
            _take(text, buf, out)
    while buf:
        _take(text, buf, out)
    return out


def _opaque(text: str, a: int, b: int, glued_left: bool, glued_right: bool) -> bool:
    """A glued group belongs to a masked number (``X``) or an all-hex word; a group glued on
    both sides is one word, all hex only when both sides are. A long word is no exception:
    a card number glued to 300 letters is still a card number."""
    if (glued_left and text[a - 1] == "X") or (glued_right and text[b] == "X"):
        return True
    if not text[a:b].isascii():  # non-ASCII digits are never hex
        return False
    left = _side(text, a - 1, -1) if glued_left else True
    right = _side(text, b, 1) if glued_right else True
    return left and right


def _take(text: str, buf: list[_Group], out: _Found) -> None:
    """Consume ``buf[0]``: the card number starting there, or just that group."""
    if len(buf) == 1 and len(buf[0][2]) < PAN_MIN:  # a lone short group: nothing to find
        del buf[0]
        return
    found = _window_at(text, buf)
    if found is None:
        del buf[0]
    else:
        count, end, digits = found
        out.append((buf[0][0], end, digits))
        del buf[:count]


def _window_at(text: str, buf: list[_Group]) -> tuple[int, int, str] | None:
    """(groups, end, digits) of the card number starting at ``buf[0]``, or None."""
    a, b, digits, _, opaque, glued_right = buf[0]
    if opaque or not digits:
        return None
    # A group right after "<digit>." is a fraction's digits: no card number starts there.
    if a >= 2 and text[a - 1] in ".\uff0e" and text[a - 2].isdecimal():
        return None
    if a >= 3 and text[a - 1] == "_" and _is_fingerprint(text, a):
        return None
    n = len(digits)
    if n >= PAN_MIN:
        if _is_card(digits) and not _iban_covers(text, a, b):
            return 1, b, digits
        return None
    if n > 6 or glued_right:
        return None
    # Grow a window of joined 3-6 digit groups, the last of which may be longer (7-9
    # digits after at least 6: 4-4-4-7, 4-6-9), to at most 19 digits; longest first.
    parts = [digits]
    total = n
    h = 1
    while h < len(buf):
        _, _, d, joined, o, gr = buf[h]
        size = len(d)
        if not joined or o or size < 3 or total + size > _PAN_MAX:
            break
        if size > 6 and (size > 9 or total < 6):
            # A long last group has 7-9 digits after 6 or more (4-4-4-7, 4-6-9): longer
            # ones are epoch timestamps (10 and 13 digits) next to a number, not a card.
            break
        parts.append(d)
        total += size
        h += 1
        if gr or size > 6:
            break
    # A last group of one or two digits (4-4-4-1, 4-4-4-2, 4-4-4-4-3 has three): what a
    # generic formatter leaves of an odd-length number. Only at the window's end.
    tail = None
    end = buf[h - 1][1]
    if PAN_MIN - 2 <= total < _PAN_MAX and len(parts[-1]) <= 6 and not buf[h - 1][5]:
        tail = _tail(text, end)
    if tail is not None and PAN_MIN <= total + len(tail[1]) <= _PAN_MAX:
        joined_digits = "".join(parts) + tail[1]
        if _is_card(joined_digits) and not _iban_covers(text, a, tail[0]):
            return h, tail[0], joined_digits
    while h > 1:
        if total >= PAN_MIN:
            joined_digits = "".join(parts)
            end = buf[h - 1][1]
            if _is_card(joined_digits) and not _iban_covers(text, a, end):
                return h, end, joined_digits
        h -= 1
        total -= len(parts.pop())
    return None


# A masked number and the "fp_" of its fingerprint token, the separator maybe URL-encoded.
_FINGERPRINT_BEFORE = re.compile(r"X[0-9]{4}(?: |\+|%20)fp_$")


def _is_fingerprint(text: str, a: int) -> bool:
    """The digits at ``a`` are a fingerprint token's (all 16 of its hex digits happen to be
    decimal: about one token in 1,900) right after the masked number it belongs to."""
    return _FINGERPRINT_BEFORE.search(text, max(0, a - 11), a) is not None


# Separators, then the one or two digits a generic formatter leaves at the end.
_TAIL = re.compile(rf"{_SEP}{{1,3}}(\d{{1,2}})(?!\d)")


def _tail(text: str, end: int) -> tuple[int, str] | None:
    """``(end, ascii digits)`` of a one- or two-digit last group right after ``end``, unless
    it is glued to a hex word or an ``X`` (then it belongs to that word)."""
    m = _TAIL.match(text, end)
    if m is None:
        return None
    stop = m.end()
    if stop < len(text) and text[stop].isalnum() and (text[stop] == "X" or _side(text, stop, 1)):
        return None
    return stop, _ascii_digits(m.group(1))


def find_pans(text: str | bytes) -> list[tuple[int, int]]:
    """``(start, end)`` offsets of every unmasked card number in ``text``.

    Bytes are read as UTF-8 and the offsets given in bytes, so a raw log line can be checked
    without decoding it first.
    """
    if len(text) < PAN_MIN:
        return []
    if isinstance(text, bytes):
        if text.isascii():
            if b"%" in text:
                return [(a, b) for a, b, _ in _scan(text.decode("ascii"))]
            shape = text.translate(_SHAPE)
            if shape.find(_THIRTEEN) < 0:
                return []
            return [(a, b) for a, b, _ in _scan(text.decode("ascii"), (text, shape))]
        decoded = text.decode("utf-8", "surrogateescape")
        return [
            (
                len(decoded[:a].encode("utf-8", "surrogateescape")),
                len(decoded[:b].encode("utf-8", "surrogateescape")),
            )
            for a, b, _ in _scan(decoded)
        ]
    return [(a, b) for a, b, _ in _scan(text)]


def mask_digits(digits: str, mode: str) -> str:
    """The masked form of a card number's ``digits`` (``last4`` or ``first6last4``)."""
    if mode == "first6last4":
        return digits[:6] + "X" * (len(digits) - 10) + digits[-4:]
    return "X" * (len(digits) - 4) + digits[-4:]


def mask_pans(text: str, mode: str, fingerprint: Callable[[str], str] | None = None) -> str:
    """``text`` with every card number masked (``mode``: ``last4`` or ``first6last4``); the
    very same object when nothing needed masking.

    ``fingerprint`` (digits -> token, see ``ScrubOptions.fingerprinter``): each masked number
    is followed by a space and its token, ``XXXXXXXXXXXX1111 fp_5c1e0f3a9b2d4e6f``.
    """
    if len(text) < PAN_MIN:
        return text
    found = _scan(text)
    if not found:
        return text
    out: list[str] = []
    pos = 0
    for a, b, digits in found:
        out.append(text[pos:a])
        out.append(mask_digits(digits, mode))
        if fingerprint is not None:
            out.append(" ")
            out.append(fingerprint(digits))
        pos = b
    out.append(text[pos:])
    return "".join(out)
