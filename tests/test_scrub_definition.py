"""The card-number definition (brands, shapes, exclusions), secret names, pairs and URLs."""

from __future__ import annotations

import random
import time
import tracemalloc
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otelfin.scrub import (
    REDACTED,
    ScrubOptions,
    brand_of,
    find_pans,
    is_secret_key,
    luhn_valid,
    may_hold_pan,
    pan_suspect_lines,
    scrub_query,
    scrub_text,
    scrub_url,
)
from tests._scrub import luhn_complete

VISA = "4111111111111111"
MASKED = "XXXXXXXXXXXX1111"


pytestmark = pytest.mark.usefixtures("scrub_defaults")


def card(prefix: str, length: int) -> str:
    """A Luhn-valid number of ``length`` digits starting with ``prefix``."""
    return luhn_complete(prefix + "0" * (length - len(prefix) - 1))


def digits_of(script_zero: int, text: str) -> str:
    """``text`` with its ASCII digits written in the script whose zero is ``script_zero``."""
    return text.translate({ord(d): script_zero + int(d) for d in "0123456789"})


# --- brands -------------------------------------------------------------------------------

BRAND_CASES = [
    ("visa", "4111111111111111"),
    ("visa", "4222222222222"),  # 13 digits
    ("visa", "4111111111111111110"),  # 19 digits
    ("mastercard", "5555555555554444"),
    ("mastercard", "2223003122003222"),  # 2-series, 2221-2720
    ("mastercard", card("2720", 16)),
    ("amex", "378282246310005"),
    ("amex", "341111111111111"),
    ("discover", "6011111111111117"),
    ("discover", card("644", 16)),
    ("discover", card("65", 19)),
    ("jcb", "3530111333300000"),
    ("jcb", "3566002020360505"),
    ("diners", "30569309025904"),  # 14 digits, 300-305
    ("diners", "36227206271667"),
    ("diners", "38520000023237"),
    ("unionpay", "6200000000000005"),
    ("unionpay", card("62", 19)),
    ("maestro", "6759649826438453"),
    ("maestro", card("5018", 13)),
    ("maestro", card("6304", 19)),
    ("rupay", card("508", 16)),
    ("rupay", card("353", 16)),
    ("mir", card("2200", 16)),
    ("mir", card("2204", 19)),
    ("verve", card("506099", 16)),
    ("troy", card("9792", 16)),
    ("dankort", card("5019", 16)),
    ("humo", card("9860", 16)),
    ("uzcard", card("8600", 16)),
]


@pytest.mark.parametrize(("brand", "number"), BRAND_CASES, ids=[f"{b}-{n}" for b, n in BRAND_CASES])
def test_each_brand_is_recognised_and_masked(brand: str, number: str) -> None:
    """A Luhn-valid number in a brand's IIN range and lengths is that brand's, and masked."""
    assert luhn_valid(number)
    if brand not in ("unionpay",):  # 62 overlaps Discover's co-branded 622126-622925
        assert brand_of(number) == brand or (brand, brand_of(number)) == ("rupay", "jcb")
    assert scrub_text(f"card {number} ok") == f"card {'X' * (len(number) - 4)}{number[-4:]} ok"


@pytest.mark.parametrize(
    "number",
    [
        card("1", 15),  # UATP: left out, 15-digit numbers starting with 1 are timestamps
        luhn_complete("176406763312345678"),  # 19-digit epoch nanoseconds
        card("4", 15),  # Visa issues 13, 16 and 19 digits only
        card("51", 15),  # Mastercard is 16 digits
        card("2220", 16),  # just below Mastercard's 2-series
        card("2721", 16),  # just above it
        card("34", 16),  # Amex is 15 digits
        card("99", 16),  # no brand
        card("70", 16),
    ],
)
def test_luhn_valid_numbers_no_brand_issues_are_kept(number: str) -> None:
    """Luhn-valid runs outside every brand's ranges and lengths are not card numbers."""
    assert luhn_valid(number) and brand_of(number) is None
    text = f"id {number} ok"
    assert scrub_text(text) is text and find_pans(text) == []


# --- shapes -------------------------------------------------------------------------------

SHAPES = {
    "plain": VISA,
    "spaces": "4111 1111 1111 1111",
    "dashes": "4111-1111-1111-1111",
    "dots": "4111.1111.1111.1111",
    "underscores": "4111_1111_1111_1111",
    "slashes": "4111/1111/1111/1111",
    "tabs": "4111\t1111\t1111\t1111",
    "repeated": "4111   1111  1111 - 1111",
    "no-break spaces": "4111\u00a01111\u202f1111\u20071111",
    "unicode dashes": "4111\u20131111\u20141111\u20111111",
    "mixed": "4111 1111-1111.1111",
    "amex grouping": "3782 822463 10005",
    "full-width digits": digits_of(0xFF10, "4111 1111 1111 1111"),
    "arabic-indic digits": digits_of(0x0660, VISA),
    "devanagari digits": digits_of(0x0966, VISA),
    "glued before": f"ref{VISA}",
    "glued after": f"{VISA}USD",
    "glued grouped": "card:4111 1111 1111 1111EUR",
    "glued to a long word": f"{'Zz' * 150}{VISA}{'q' * 300}",
    "full-width glued to a long word": "Zz" * 150 + digits_of(0xFF10, VISA),
    "decimal": f"{VISA}.00",
    "float repr": f"{float(VISA)!r}",
    "percent-encoded spaces": "4111%201111%201111%201111",
    "percent-encoded dashes": "4111%2D1111%2d1111%2D1111",
    "form-encoded": "4111+1111+1111+1111",
    "percent no-break": "4111%C2%A01111%C2%A01111%C2%A01111",
}


def test_long_words_are_words_not_blobs() -> None:
    """A card number glued to a long word is found whatever the word's length (words of more
    than 256 letters used to count as opaque blobs); one glued to a long all-hex run is part
    of a hex word (a hash), as a short one is."""
    for text in (
        "z" * 300 + VISA,
        VISA + "z" * 5000,
        "note " + "a" * 255 + "z" + VISA,  # hex letters, then one that is not
        "k" * 1000 + "4111 1111 1111 1111" + "k" * 1000,
    ):
        assert len(find_pans(text)) == 1, text[:20]
        assert find_pans(scrub_text(text)) == []
    for text in ("a" * 300 + VISA, VISA + "f" * 300, "e3b0c442" * 40 + VISA + "98fc"):
        assert find_pans(text) == []
        assert scrub_text(text) == text


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_shape_is_masked(shape: str) -> None:
    """Each payload shape of a card number is found and masked, keeping the last four."""
    number = SHAPES[shape]
    expected_tail = "0005" if shape == "amex grouping" else "1111"
    text = f"paid with {number} today"
    out = scrub_text(text)
    assert len(find_pans(text)) == 1
    assert find_pans(out) == []
    digits = "".join(str(unicodedata.decimal(c)) for c in out if c.isdecimal())
    assert digits.count("4111") == 0 and expected_tail in out
    assert scrub_text(out) == out


@pytest.mark.parametrize(
    "text",
    [
        "ord-20261125-000004",
        "ledger led-20261125-000004-01 for ord-20261125-000004",
        "1764067633123456789",  # epoch ns
        "2026-11-25T10:47:13.123456789+00:00",
        "4bf92f3577b34da6a3ce929d0e0e4736",  # trace id
        "00f067aa0ba902b7",  # span id
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",  # sha256
        "123e4567-e89b-12d3-a456-426614174000",  # UUID
        "41111111-1111-1111-1111-111111111111",  # an all-digit UUID
        "DE89 3704 0044 0532 0130 00",  # IBANs, grouped and not
        "DE89370400440532013000",
        "GB82 WEST 1234 5698 7654 32",
        "FR1420041010050500013M02606",
        "BE68539007547034",
        "DK5000400440116243",
        "CH9300762011623852957",
        "amount 4111111.11 EUR and 0.4111111111111111",
        "0.30000000000000004",
        "4.111111111111111e+18",
        "+44 20 7946 0958, 10.0.0.1:8080",
        "XXXXXXXXXXXX1111 2222 3333 4444",  # a masked number next to other digits
        "411111XXXXXX1111",
        "4111111111111112",  # Luhn-invalid
        "4111 1 1111 1111 1111",  # a one-digit group breaks the grouping
        "41111111 11111111",  # 8-digit groups are not a card's grouping
    ],
)
def test_non_card_numbers_are_kept(text: str) -> None:
    """Order ids, timestamps, hex ids, UUIDs, IBANs, fractions and masked forms are kept."""
    assert scrub_text(text) is text
    assert find_pans(text) == []


def test_an_iban_holding_a_card_shaped_stretch_is_kept() -> None:
    """A valid IBAN (mod 97) is kept even when four of its groups look like a Visa number."""
    bban = "1234" + VISA
    numeric = "".join(str(int(c, 36)) for c in bban + "GB00")
    iban = f"GB{98 - int(numeric) % 97:02d}{bban}"
    spaced = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    assert scrub_text(spaced) is spaced
    broken = spaced.replace(spaced[2:4], "00", 1)  # a wrong check digit: not an IBAN
    assert scrub_text(broken) != broken


def test_first6last4_shows_at_most_six_and_four() -> None:
    """The first6last4 mask keeps the BIN and the last four, nothing more, in every shape."""
    options = ScrubOptions(pan_mask="first6last4")
    for shape, number in SHAPES.items():
        out = scrub_text(f"x {number} y", options=options)
        expected = "378282XXXXX0005" if shape == "amex grouping" else "411111XXXXXX1111"
        assert expected in out, shape


@pytest.mark.parametrize("unit", ["1 ", "4 ", "1-", "1.", "12345678901 ", "4111111111111111 "])
def test_ten_megabytes_adversarial_is_linear_and_small(unit: str) -> None:
    """10 MB of worst-case shapes is scrubbed in linear time and bounded extra memory.

    The bounds are far above the measured figures (see benchmarks/bench_scrub.py): they catch a
    complexity or memory regression, not a slow machine.
    """
    size = 1_000_000 if unit.startswith("4111") else 10_000_000  # all cards: 1 MB is enough
    text = (unit * (size // len(unit) + 1))[:size]
    tracemalloc.start()
    started = time.perf_counter()
    out = scrub_text(text)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 60
    extra = peak - (len(out) if out is not text else 0)
    assert extra < 50_000_000


# --- secret names and pairs ---------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "security_code",
        "csc",
        "card_verification",
        "otp",
        "jwt",
        "bearer",
        "passcode",
        "pass",
        "ssn",
        "expiry",
        "exp_date",
        "signature",
        "pwd",
        "client_secret",
        "private_key",
        "cvv2",
        "X-Signature",
        "cardExpiry",
        "user.ssn",
    ],
)
def test_extended_secret_names(key: str) -> None:
    """The secret names the probe found unredacted are secrets, in any key style."""
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["passenger", "compass", "bypassed", "expected", "sign", "post"])
def test_secret_names_match_whole_words_only(key: str) -> None:
    """A secret name inside a longer word does not make the key a secret."""
    assert not is_secret_key(key)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("login password=hunter2 ok", f"login password={REDACTED} ok"),
        ('{"cvv": "123", "amount": "9.99"}', f'{{"cvv": "{REDACTED}", "amount": "9.99"}}'),
        ("otp: 123456, retry", f"otp: {REDACTED}, retry"),
        ("Authorization: Bearer eyJhbGciOi.x.y", f"Authorization: {REDACTED}"),
        ("db.password = 's3 cr3t';", f"db.password = '{REDACTED}';"),
        ("pin=1234", f"pin={REDACTED}"),
        ("client_secret=abc&grant=x", f"client_secret={REDACTED}&grant=x"),
        ("at 10:47:13 status=200 channel: web", "at 10:47:13 status=200 channel: web"),
    ],
)
def test_secret_pairs_in_free_text(text: str, expected: str) -> None:
    """key=value, key: value and "key": "value" pairs with a secret key are redacted."""
    assert scrub_text(text) == expected
    assert scrub_text(expected) == expected


# --- URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://api.example.com/pay?cvv=123&token=abc&enc=4111%201111%201111%201111&n=2",
            f"https://api.example.com/pay?cvv={REDACTED}&token={REDACTED}&enc={MASKED}&n=2",
        ),
        ("https://user:hunter2@db.example.com:5432/x", f"https://{REDACTED}@db.example.com:5432/x"),
        (f"/cards/{VISA}/charge", f"/cards/{MASKED}/charge"),
        ("/pay?card=%34%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31", f"/pay?card={MASKED}"),
        ("/pay?pass%77ord=x", f"/pay?pass%77ord={REDACTED}"),
        (
            "https://app.example.com/cb#access_token=abc&state=1",
            "https://app.example.com/cb#access_token=[REDACTED]&state=1",
        ),
        ("https://example.com/a?b=1", "https://example.com/a?b=1"),
    ],
)
def test_scrub_url(url: str, expected: str) -> None:
    """Userinfo, secret query names (decoded) and decoded card numbers are scrubbed."""
    assert scrub_url(url) == expected
    if url == expected:
        assert scrub_url(url) is url


def test_scrub_query_and_urls_in_free_text() -> None:
    """A bare query string and a URL inside a log message are scrubbed the same way."""
    assert scrub_query("a=1&pin=1234") == f"a=1&pin={REDACTED}"
    text = "GET https://bob:pw@h.example/x?k=4111%2D1111%2D1111%2D1111 failed"
    assert scrub_text(text) == f"GET https://{REDACTED}@h.example/x?k={MASKED} failed"


def test_unparsable_url_is_still_scanned() -> None:
    """A URL urllib rejects (bad IPv6 bracket) is scanned as text instead of passing whole."""
    assert scrub_url(f"http://[::1/x?c={VISA}") == f"http://[::1/x?c={MASKED}"


# --- a corpus of realistic payment log lines ----------------------------------------------


def _iban(rng: random.Random) -> str:
    bban = "".join(rng.choice("0123456789") for _ in range(18))
    numeric = "".join(str(int(c, 36)) for c in bban + "DE00")
    return f"DE{98 - int(numeric) % 97:02d}{bban}"


def corpus(n: int, seed: int = 12) -> list[str]:
    """``n`` realistic payment log lines that hold no card number."""
    rng = random.Random(seed)
    hexdigits = "0123456789abcdef"
    lines = []
    for i in range(n):
        day = f"2026{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        order = f"ord-{day}-{rng.randint(0, 999999):06d}"
        ns = 1_764_000_000_000_000_000 + rng.randint(0, 10**16)
        iban = _iban(rng)
        grouped = " ".join(iban[j : j + 4] for j in range(0, len(iban), 4))
        trace = "".join(rng.choice(hexdigits) for _ in range(32))
        span = "".join(rng.choice(hexdigits) for _ in range(16))
        amount = f"{rng.randint(0, 99999)}.{rng.randint(0, 99):02d}"
        lines.append(
            f"2026-11-25T10:{i % 60:02d}:13.{rng.randint(0, 999999):06d}+00:00 payment_settled "
            f"order_id={order} ledger=led-{day}-{rng.randint(0, 999999):06d}-{i % 100:02d} "
            f"ts_ns={ns} ts_ms={ns // 1_000_000} iban={iban} iban_display='{grouped}' "
            f"trace_id={trace} span_id={span} amount={amount} EUR ratio={rng.random()!r} "
            f"uuid={rng.getrandbits(128):032x} bin=411111 last4=1111 ref=R{rng.randint(0, 10**12)}"
        )
    return lines


def test_corpus_of_payment_lines_has_no_false_positive() -> None:
    """20,000 generated payment lines (order ids, IBANs, timestamps, ids, amounts): none masked."""
    flagged = [line for line in corpus(20_000) if find_pans(line)]
    assert flagged == []


# --- properties against a plain reference -------------------------------------------------

_SEPS = [" ", "-", ".", "_", "/", "\t", "\u00a0", "  ", " - "]
_HEXCHARS = frozenset("0123456789abcdefABCDEF")


def reference_find(text: str) -> list[str]:
    """The definition, written plainly (quadratic, no pre-filter): the ASCII digits of every
    card number, leftmost first, longest first."""
    groups = []  # (start, end) of each maximal run of decimal digits
    i = 0
    while i < len(text):
        if text[i].isdecimal():
            j = i
            while j < len(text) and text[j].isdecimal():
                j += 1
            groups.append((i, j))
            i = j
        else:
            i += 1

    def word_opaque(start: int, end: int) -> bool:
        lo, hi = start, end
        while lo > 0 and text[lo - 1].isalnum():
            lo -= 1
        while hi < len(text) and text[hi].isalnum():
            hi += 1
        word = text[lo:hi]
        if (lo < start and text[start - 1] == "X") or (hi > end and text[end] == "X"):
            return True
        return word != text[start:end] and all(c in _HEXCHARS for c in word)

    def gap_ok(a: int, b: int) -> bool:
        gap = text[a:b]
        return 1 <= len(gap) <= 3 and all(c in " -._/\t\u00a0" for c in gap)

    def ascii_digits(a: int, b: int) -> str:
        return "".join(str(unicodedata.decimal(c)) for c in text[a:b])

    found = []
    g = 0
    while g < len(groups):
        start, end = groups[g]
        fraction = start >= 2 and text[start - 1] == "." and text[start - 2].isdecimal()
        best = None
        if not fraction and not word_opaque(start, end):
            size = end - start
            if 13 <= size <= 19:
                digits = ascii_digits(start, end)
                if brand_of(digits) and luhn_valid(digits):
                    best = (1, digits)
            elif 3 <= size <= 6 and not (end < len(text) and text[end].isalpha()):
                for h in range(min(len(groups), g + 8), g + 1, -1):
                    span = groups[g:h]
                    sizes = [b - a for a, b in span]
                    # Groups of 3-6 digits; the last may be 1-2 (4-4-4-1) or 7-9 after 6+ (4-4-4-7).
                    if not all(3 <= s <= 6 for s in sizes[:-1]) or not 13 <= sum(sizes) <= 19:
                        continue
                    last = sizes[-1]
                    if not 1 <= last <= 9 or (last > 6 and sum(sizes[:-1]) < 6):
                        continue
                    if not all(gap_ok(span[k][1], span[k + 1][0]) for k in range(len(span) - 1)):
                        continue
                    if any(text[a - 1].isalpha() for a, _ in span[1:]):
                        continue
                    if any(b < len(text) and text[b].isalpha() for _, b in span[:-1]):
                        continue
                    last_a, last_b = span[-1]
                    if h - 1 > g and word_opaque(last_a, last_b):
                        continue
                    digits = "".join(ascii_digits(a, b) for a, b in span)
                    if brand_of(digits) and luhn_valid(digits):
                        best = (h - g, digits)
                        break
        if best is None:
            g += 1
        else:
            found.append(best[1])
            g += best[0]
    return found


_piece = st.one_of(
    st.sampled_from([VISA, "378282246310005", "5555555555554444", "6011111111111117"]),
    st.sampled_from(["4111", "1111", "3782", "822463", "10005", "5555", "4444", "12", "7"]),
    st.sampled_from(["4222", "2222", "2", "3056", "9309", "0259", "04", "930902", "5904"]),
    st.sampled_from(["1111110", "1111111", "6200000", "0000000005", "4111 1111 1111 1"]),
    st.text(alphabet="0123456789", min_size=1, max_size=8),
    st.sampled_from(_SEPS),
    st.sampled_from(["ref", "USD", "abc", "ord-", "=", ":", ",", '"', "0.", "e"]),
    st.text(alphabet=digits_of(0xFF10, "0123456789"), min_size=1, max_size=4),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_piece, max_size=12))
def test_property_scanner_matches_the_plain_definition(pieces: list[str]) -> None:
    """On text built from digits, card numbers, separators and words, the scanner finds
    exactly what the plain definition finds."""
    text = "".join(pieces)
    got = [
        "".join(str(unicodedata.decimal(c)) for c in text[a:b] if c.isdecimal())
        for a, b in find_pans(text)
    ]
    assert got == reference_find(text)


@settings(max_examples=400, deadline=None)
@given(
    st.text(alphabet="0123456789 -._/\tabcXUSD%2+\u00a0\uff11\uff14", max_size=200),
    st.sampled_from(["last4", "first6last4"]),
)
def test_property_output_never_holds_a_card_number(text: str, mode: str) -> None:
    """Whatever the input, the output holds no card number and scrubbing again changes nothing."""
    options = ScrubOptions(pan_mask=mode)  # type: ignore[arg-type]
    out = scrub_text(text, options=options)
    assert find_pans(out) == []
    assert find_pans(out.encode()) == []
    assert scrub_text(out, options=options) == out


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([n for _, n in BRAND_CASES]),
    st.sampled_from([*_SEPS, ""]),
    st.sampled_from(["", "ref", "card ", "=", '"']),
    st.sampled_from(["", "USD", " ok", '"', ".00", ","]),
)
def test_property_any_brand_in_any_grouping_is_masked(
    number: str, sep: str, before: str, after: str
) -> None:
    """A brand's number grouped in fours by any separator, between any neighbours, is masked."""
    groups = []
    i = 0
    while len(number) - i > 6:  # fours, the last group 3-6 digits (4-4-5, 4-4-4-3, ...)
        groups.append(number[i : i + 4])
        i += 4
    groups.append(number[i:])
    grouped = sep.join(groups)
    text = f"{before}{grouped}{after}"
    out = scrub_text(text)
    assert number not in "".join(c for c in out if c.isdecimal())
    assert find_pans(out) == []


_LINE_CHARS = st.sampled_from(list('0123456789 -._/+\tabcXx%\u00e9"{}:,'))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(_LINE_CHARS, max_size=60), max_size=8))
def test_pan_suspect_lines_lists_exactly_the_lines_may_hold_pan_passes(lines: list[str]) -> None:
    """The block pre-filter of ``logs validate`` names the same lines as asking one by one."""
    raw = [line.encode("utf-8") for line in lines]
    found = pan_suspect_lines(b"\n".join(raw))
    if found is None:
        block = b"\n".join(raw)
        assert not block.isascii() or b"%" in block
    else:
        assert found == [i for i, line in enumerate(raw) if may_hold_pan(line)]
