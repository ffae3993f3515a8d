"""The card-number (PAN) scanner: :func:`find_pans` finds, :func:`scrub_text` masks.

The log validator (``otelfin logs validate``) uses :func:`find_pans`, which shares the scanner
with :func:`scrub_text`: the validator never flags what the scrubber keeps.

What counts as a card number (PAN)
    A run of 13-19 ASCII digits, optionally grouped by *single* spaces or dashes
    (``4111 1111 1111 1111``, ``4111-1111-1111-1111``), that passes the Luhn check and is not
    part of a longer alphanumeric token: the character before the first digit and the one after
    the last must not be an ASCII letter or digit. So the decimal stretches inside a hex trace
    id, a UUID, base64 or a hash never match, while ``card=4111111111111111,`` does. A decimal
    point between digits also continues a token, so the digits of a number such as
    ``0.30000000000000004`` (floats carry up to 17 significant digits) are not a card number,
    while a sentence ending ``... 4111111111111111.`` still is.

    Inside a longer grouped run (``4111111111111111 12 25``) every stretch of whole groups with
    13-19 digits is a candidate, because each group boundary is a token boundary. Starting at
    the leftmost group, the longest Luhn-valid stretch is masked; scanning resumes after it.

How it is masked
    ``last4`` (default): ``XXXXXXXXXXXX1111``; ``first6last4``: ``411111XXXXXX1111``. The mask
    drops the separators and uses the letter ``X`` on purpose: the masked token is one
    alphanumeric token, so the digits it keeps can never join neighbouring digits into a new
    candidate. That makes scrubbing idempotent and :func:`find_pans` of any scrubbed text empty.

Why hand-written, and why linear
    No library implements this definition (token boundaries plus Luhn over grouped stretches).
    The only regular expression used is ``[0-9](?:[ -]?[0-9]){12,}`` behind a digit lookbehind:
    every character has at most one way to match it (a separator is never a digit), so the
    engine never backtracks more than one character, and it only starts at the first digit of
    a run. Everything else is a single pass over the candidate with prefix sums for Luhn, so
    the cost is linear in the input (a 1 MB adversarial string is a test case).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from itertools import accumulate

from otelfin.scrub._options import ScrubOptions, current_options

__all__ = ["MIN_LEN", "find_pans", "luhn_valid", "mask_digits", "scrub_text"]

#: The shortest text that can hold a PAN (13 digits): shorter strings skip the scan.
MIN_LEN = 13

# A digit run of 13+ digits with single space/dash separators, starting at the run's first digit.
_CANDIDATE_B = re.compile(rb"(?<![0-9])[0-9](?:[ -]?[0-9]){12,}")
_SHAPE = bytes(48 if chr(i) in "0123456789 -" else 120 for i in range(256))
_THIRTEEN = b"0" * MIN_LEN
_ALNUM_B = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_DIGITS_B = frozenset(b"0123456789")
# Luhn: each digit's contribution when it is not doubled / when it is doubled.
_DOUBLE_TABLE = bytes.maketrans(b"0123456789", b"0246813579")


def luhn_valid(digits: str | bytes) -> bool:
    """True when a string of ASCII digits passes the Luhn (mod 10) check."""
    data = digits.encode("ascii") if isinstance(digits, str) else digits
    # Sum the undoubled digits and the doubled ones (mapped through the table) at C speed.
    total = sum(data[-1::-2]) + sum(data[-2::-2].translate(_DOUBLE_TABLE)) - 48 * len(data)
    return total % 10 == 0


_Found = list[tuple[int, int, str]]


def _windows(run: str, base: int, out: _Found) -> None:
    """Append ``(start, end, digits)`` for each PAN in ``run`` (offsets plus ``base``).

    ``run`` is one candidate (digits with single separators) whose first and last groups are
    known not to touch a letter or digit. From the leftmost group, the longest Luhn-valid
    stretch of whole groups (13-19 digits) wins; the search resumes after it. Each start tries
    at most seven lengths of at most 19 digits, so the work is linear in the run.
    """
    if " " not in run and "-" not in run:  # the common case: one ungrouped number
        if len(run) <= 19 and luhn_valid(run):
            out.append((base, base + len(run), run))
        return
    parts = run.replace(" ", "-").split("-")
    lens = [len(p) for p in parts]
    offsets = []
    pos = base
    for size in lens:
        offsets.append(pos)
        pos += size + 1
    n = len(parts)
    if n > 8:
        _many_groups(parts, lens, offsets, out)
        return
    g = 0
    while g < n:
        count = 0
        h = g
        while h < n and count + lens[h] <= 19:
            count += lens[h]
            h += 1
        matched = False
        while h > g and count >= MIN_LEN:
            digits = "".join(parts[g:h])
            if luhn_valid(digits):
                out.append((offsets[g], offsets[h - 1] + lens[h - 1], digits))
                g = h
                matched = True
                break
            h -= 1
            count -= lens[h]
        if not matched:
            g += 1


def _many_groups(parts: list[str], lens: list[int], offsets: list[int], out: _Found) -> None:
    """:func:`_windows` for runs of many groups: Luhn sums from prefix sums, O(1) a window.

    ``even`` doubles the digits at even positions of the run, ``odd`` those at odd ones; a
    window ending at position ``b - 1`` doubles the positions of the other parity.
    """
    digits = "".join(parts)
    data = digits.encode("ascii")
    doubled = data.translate(_DOUBLE_TABLE)
    even = bytearray(data)
    even[0::2] = doubled[0::2]
    odd = bytearray(data)
    odd[1::2] = doubled[1::2]
    sums_even = list(accumulate(even, initial=0))  # ASCII codes: 48 per digit is removed below
    sums_odd = list(accumulate(odd, initial=0))
    counts = list(accumulate(lens, initial=0))  # digits before each group
    n = len(parts)
    g = 0
    while g < n:
        a = counts[g]
        h = bisect_right(counts, a + 19) - 1  # groups g..h-1 hold at most 19 digits
        matched = False
        while h > g:
            b = counts[h]
            if b - a < MIN_LEN:
                break
            sums = sums_even if (b - 1) & 1 else sums_odd
            if (sums[b] - sums[a] - 48 * (b - a)) % 10 == 0:
                out.append((offsets[g], offsets[h - 1] + lens[h - 1], digits[a:b]))
                g = h
                matched = True
                break
            h -= 1
        if not matched:
            g += 1


def _scan(data: bytes) -> _Found:
    """``(start, end, digits)`` for every PAN in ``data`` (ASCII-compatible bytes).

    A fast pre-filter first: translate digits, spaces and dashes to ``0`` and everything else
    to ``x``; a PAN needs 13 such characters in a row, which ``bytes.find`` locates at C speed
    (about 0.2 us for a 200-byte line against ~3 us for the regular expression alone). Only
    those stretches are examined further.
    """
    out: _Found = []
    shape = data.translate(_SHAPE)
    pos = shape.find(_THIRTEEN)
    while pos >= 0:
        stop = shape.find(b"x", pos + MIN_LEN)
        if stop < 0:
            stop = len(data)
        region = data[pos:stop]
        core = region.strip(b" -")
        groups = core.replace(b"-", b" ").split(b" ")
        if b"" not in groups:
            # The usual shape: one run of digits and single separators, no regex needed.
            digits = b"".join(groups)
            n = len(digits)
            if n >= MIN_LEN:
                start = pos + len(region) - len(region.lstrip(b" -"))
                size = len(core)
                if n <= 19 and (
                    len(groups) == 1
                    # Dropping either edge group leaves < 13 digits: only the whole run can
                    # be a PAN (and a glued edge rules it out).
                    or (len(groups[0]) > n - MIN_LEN and len(groups[-1]) > n - MIN_LEN)
                ):
                    # Luhn first (inlined: this is the validator's hot path); it rejects
                    # nine candidates in ten before the neighbours need looking at.
                    total = sum(digits[-1::-2]) + sum(digits[-2::-2].translate(_DOUBLE_TABLE))
                    if (
                        (total - 48 * n) % 10 == 0
                        and not _glued_before(data, start)
                        and not _glued_after(data, start + size)
                    ):
                        out.append((start, start + size, digits.decode("ascii")))
                elif len(groups) > 1:  # several groups: the general path
                    _candidate(data, start, start + size, core.decode("ascii"), out)
        else:
            for m in _CANDIDATE_B.finditer(data, pos, stop):
                _candidate(data, m.start(), m.end(), m.group().decode("ascii"), out)
        pos = shape.find(_THIRTEEN, stop)
    return out


def _glued_before(data: bytes, start: int) -> bool:
    """The character before ``start`` continues a token: a letter or digit, or the decimal
    point of a number (``0.4111111111111111`` is a fraction, not a card)."""
    if start == 0:
        return False
    before = data[start - 1]
    return before in _ALNUM_B or (before == 46 and start >= 2 and data[start - 2] in _DIGITS_B)


def _glued_after(data: bytes, end: int) -> bool:
    """The character at ``end`` continues a token (see :func:`_glued_before`)."""
    if end >= len(data):
        return False
    after = data[end]
    return after in _ALNUM_B or (after == 46 and end + 1 < len(data) and data[end + 1] in _DIGITS_B)


def _candidate(data: bytes, start: int, end: int, run: str, out: _Found) -> None:
    # A first/last group glued to a letter (or digit) belongs to a longer token: drop it.
    if _glued_before(data, start):
        cut = _first_sep(run)
        if cut < 0:
            return
        run = run[cut + 1 :]
        start += cut + 1
    if _glued_after(data, end):
        cut = _last_sep(run)
        if cut < 0:
            return
        run = run[:cut]
    if len(run) >= MIN_LEN:
        _windows(run, start, out)


def _first_sep(run: str) -> int:
    i = run.find(" ")
    j = run.find("-")
    if i < 0:
        return j
    if j < 0:
        return i
    return min(i, j)


def _last_sep(run: str) -> int:
    return max(run.rfind(" "), run.rfind("-"))


def _as_bytes(text: str) -> bytes:
    # One byte per character (non-ASCII becomes "?", a token boundary like any non-ASCII
    # character), so offsets into the bytes are offsets into the string.
    return text.encode("ascii", "replace")


def find_pans(text: str | bytes) -> list[tuple[int, int]]:
    """``(start, end)`` offsets of every unmasked card number in ``text``.

    Bytes are scanned as ASCII (any non-ASCII byte is a token boundary, as a non-ASCII character
    is in a string), so a raw UTF-8 log line can be checked without decoding it.
    """
    if len(text) < MIN_LEN:
        return []
    data = text if isinstance(text, bytes) else _as_bytes(text)
    return [(a, b) for a, b, _ in _scan(data)]


def mask_digits(digits: str, mode: str) -> str:
    """The masked form of a card number's ``digits`` (``last4`` or ``first6last4``)."""
    if mode == "first6last4":
        return digits[:6] + "X" * (len(digits) - 10) + digits[-4:]
    return "X" * (len(digits) - 4) + digits[-4:]


def scrub_text(text: str, mask: str | None = None, *, options: ScrubOptions | None = None) -> str:
    """``text`` with every card number masked.

    ``mask`` (``last4``/``first6last4``) overrides ``options.pan_mask``; ``options`` defaults
    to :func:`~otelfin.scrub.current_options`. Returns the very same object when nothing
    needed masking.
    """
    if len(text) < MIN_LEN:
        return text
    data = _as_bytes(text)
    if data.translate(_SHAPE).find(_THIRTEEN) < 0:
        return text
    mode = mask or (options or current_options()).pan_mask
    out: list[str] = []
    pos = 0
    for a, b, digits in _scan(data):
        out.append(text[pos:a])
        out.append(mask_digits(digits, mode))
        pos = b
    if pos == 0:
        return text
    out.append(text[pos:])
    return "".join(out)
