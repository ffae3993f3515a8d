"""PCI round two: formatter groupings of every brand length, the keeper corpus, tunable secret
names and keyed card fingerprints (scanner and option level; channels: test_pci_channels)."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from otelfin.scrub import (
    BRANDS,
    REDACTED,
    ScrubOptions,
    brand_of,
    find_pans,
    fingerprint,
    fingerprint_key_id,
    is_secret_key,
    luhn_valid,
    mask_digits,
    scrub_text,
    scrub_url,
    scrub_value,
)
from tests._scrub import luhn_complete

TOKEN = re.compile(r"fp_[0-9a-f]{16}")


pytestmark = pytest.mark.usefixtures("scrub_defaults")


def chunks(number: str, sizes: list[int]) -> list[str]:
    """``number`` cut into groups of ``sizes`` (the last group takes the rest)."""
    out, i = [], 0
    for size in sizes:
        if i >= len(number):
            break
        out.append(number[i : i + size])
        i += size
    if i < len(number):
        out.append(number[i:])
    return out


def every(width: int, number: str) -> list[str]:
    """Groups of ``width`` from the left, the remainder last (a generic formatter)."""
    return [number[i : i + width] for i in range(0, len(number), width)]


#: How formatters group a card number: generic "every four" (4-4-4-1 ... 4-4-4-4-3), fixed
#: gaps at 4/8/12 (Braintree's credit-card-type, Cleave.js UnionPay: 4-4-4-7), Amex/Diners
#: gaps at 4/10 (4-6-4, 4-6-5, 4-6-9), fives, sixes, and a 6-digit BIN then fours.
GROUPINGS = {
    "fours": lambda n: every(4, n),
    "fives": lambda n: every(5, n),
    "sixes": lambda n: every(6, n),
    "gaps-4-8-12": lambda n: chunks(n, [4, 4, 4]),
    "gaps-4-10": lambda n: chunks(n, [4, 6]),
    "bin-then-fours": lambda n: [n[:6], *every(4, n[6:])],
}

ISSUE_SHAPES = [
    "4222 2222 2222 2",  # 13-digit Visa, 4-4-4-1
    "4222-2222-2222-2",
    "3056 9309 0259 04",  # 14-digit Diners, 4-4-4-2
    "3782 8224 6310 005",  # 15-digit Amex, 4-4-4-3
    "3056 930902 5904",  # 4-6-4
    "3782 822463 10005",  # 4-6-5
    "4111 1111 1111 1111 110",  # 19-digit Visa, 4-4-4-4-3
    "4111 1111 1111 1111110",  # 4-4-4-7
]


@pytest.mark.parametrize("text", ISSUE_SHAPES)
@pytest.mark.parametrize("around", ["{}", "card {} ok", "pan={}", '"{}"', "x:{}USD", "({}),"])
def test_issue_shapes_are_masked(text: str, around: str) -> None:
    """The shapes the issue reports (4-4-4-1, 4-4-4-2, 4-4-4-3, 4-6-4, 4-6-5, 4-4-4-4-3) are
    found and masked in any surrounding, keeping only the last four."""
    line = around.format(text)
    digits = "".join(c for c in text if c.isdigit())
    assert luhn_valid(digits) and brand_of(digits)
    assert len(find_pans(line)) == 1, line
    out = scrub_text(line)
    assert digits[:-4] not in "".join(c for c in out if c.isdigit())
    assert find_pans(out) == [] and scrub_text(out) == out


def _brand_numbers() -> st.SearchStrategy[str]:
    """A Luhn-valid number of any brand's prefix range and any length it issues."""

    @st.composite
    def build(draw: st.DrawFn) -> str:
        _, low, high, lengths = draw(st.sampled_from(BRANDS))
        length = draw(st.sampled_from(sorted(lengths)))
        prefix = str(draw(st.integers(low, high)))
        body_len = length - len(prefix) - 1
        body = draw(st.text(alphabet="0123456789", min_size=body_len, max_size=body_len))
        return luhn_complete(prefix + body)

    return build()


@settings(max_examples=1500, deadline=None)
@given(
    _brand_numbers(),
    st.sampled_from(sorted(GROUPINGS)),
    st.sampled_from([" ", "-", ".", "\u00a0", " - ", "_", "%20"]),
    st.sampled_from(["", "card ", "pan:", "ref ", '"']),
    st.sampled_from(["", " ok", "USD", '"', ".", ", next"]),
    st.sampled_from(["last4", "first6last4"]),
)
def test_property_every_brand_length_in_every_formatter_grouping_is_masked(
    number: str, grouping: str, sep: str, before: str, after: str, mode: str
) -> None:
    """Every brand, every length it issues (13-19), every formatter grouping: masked, the
    output clean and stable."""
    assert brand_of(number)
    text = before + sep.join(GROUPINGS[grouping](number)) + after
    options = ScrubOptions(pan_mask=mode)  # type: ignore[arg-type]
    out = scrub_text(text, options=options)
    assert len(find_pans(text)) == 1, text
    assert mask_digits(number, mode) in out or REDACTED in out, (text, out)
    # At most the last four (and the first six) of the digits survive, nothing in between.
    assert len([c for c in out if c.isdigit()]) <= (10 if mode == "first6last4" else 4), out
    assert find_pans(out) == [] and scrub_text(out, options=options) == out


# --- the keeper corpus --------------------------------------------------------------------


def _iban(country: str, bban: str) -> str:
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(numeric) % 97:02d}{bban}"


_hex_id = st.text(alphabet="0123456789abcdef", min_size=16, max_size=32).filter(
    lambda s: any(c.isalpha() for c in s)  # an all-digit "hex id" is a number like any other
)
_keepers = st.one_of(
    st.builds(
        "ord-{}{:02d}{:02d}-{:06d}".format,
        st.integers(2000, 2099),
        st.integers(1, 12),
        st.integers(1, 28),
        st.integers(0, 999_999),
    ),
    st.builds(
        "{}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}.{:06d}+00:00".format,
        st.integers(2000, 2099),
        st.integers(1, 12),
        st.integers(1, 28),
        st.integers(0, 23),
        st.integers(0, 59),
        st.integers(0, 59),
        st.integers(0, 999_999),
    ),
    st.builds(str, st.integers(1_000_000_000, 1_999_999_999)),  # epoch seconds
    st.builds(str, st.integers(10**12, 2 * 10**12)),  # ms
    st.builds(str, st.integers(10**15, 2 * 10**15)),  # us
    st.builds(str, st.integers(10**18, 2 * 10**18)),  # ns
    st.builds(
        _iban,
        st.sampled_from(["DE", "GB", "FR", "NL", "ES"]),
        st.text(alphabet="0123456789", min_size=18, max_size=18),
    ).flatmap(
        lambda iban: st.sampled_from(
            [iban, " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))]
        )
    ),
    _hex_id,
    st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ0123456789", min_size=6, max_size=6).map(
        lambda code: f"auth_code={code}"
    ),
    st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ0123456789", min_size=6, max_size=6).map(
        lambda code: f"approval_code: {code}"
    ),
    st.uuids().map(str),
    st.builds("{}.{:02d}".format, st.integers(0, 99_999), st.integers(0, 99)),
)


@settings(max_examples=1500, deadline=None)
@given(st.lists(_keepers, min_size=1, max_size=6), st.sampled_from([" ", ", ", " | ", "\t"]))
def test_property_keeper_corpus_is_never_touched(items: list[str], sep: str) -> None:
    """Order ids, timestamps (ISO and epoch s/ms/us/ns), IBANs (grouped or not), hex ids,
    UUIDs, amounts and approval codes, in any mix: nothing found, nothing changed."""
    line = sep.join(items)
    assert find_pans(line) == []
    assert scrub_text(line) is line


def test_fixed_keeper_lines_are_kept() -> None:
    """Realistic lines the new last-group shapes could have hit stay whole."""
    lines = [
        "ord-20261125-000004-01 settled 2026-11-25 10:47:13 +0000",
        "ledger led-20261125-000004-01 batch 2026 11 25 7",
        "phone +44 20 7946 0958 ext 12",
        "amount 1 234 567.89 EUR at 10:47",
        "DE89 3704 0044 0532 0130 00 and GB82 WEST 1234 5698 7654 32",
        "span 00f067aa0ba902b7 trace 4bf92f3577b34da6a3ce929d0e0e4736 auth_code=A1B2C3",
        "XXXXXXXXXXXX1111 22",
        "41111111 1111111 1",
        "ord-20000101-000000 auth_code=00G486 1000000000000",  # found by Hypothesis
        "ref 4861 000000000000 and 486 1764067633123",  # 4-12 and 3-13 are no formatter's
        "qty 450000 1764067633123 and 411111-1764067633",  # a number, then epoch ms or s
    ]
    for line in lines:
        assert scrub_text(line) is line, line
        assert find_pans(line) == [], line


def test_random_lines_with_odd_groups_are_mostly_kept() -> None:
    """20,000 lines of digit groups ending in short groups (no brand prefix): none masked."""
    rng = random.Random(19)
    for _ in range(20_000):
        first = rng.choice("01789")  # no brand starts 0, 1 or 7; 8/9 only 81, 82, 86, 97
        groups = [first + "".join(rng.choice("0123456789") for _ in range(3))]
        groups += ["".join(rng.choice("0123456789") for _ in range(4)) for _ in range(2)]
        groups.append("".join(rng.choice("0123456789") for _ in range(rng.randint(1, 3))))
        line = "id " + " ".join(groups) + " done"
        digits = "".join(groups)
        if brand_of(digits) and luhn_valid(digits):
            continue
        assert find_pans(line) == [], line


# --- secret names ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["auth_code", "authCode", "approval_code", "AUTH-CODE"])
def test_approval_codes_are_not_secrets(key: str) -> None:
    """An acquirer's approval code (ISO 8583 DE38) is logged as is, in fields and pairs."""
    assert not is_secret_key(key)
    assert scrub_value({key: "A1B2C3"}) == {key: "A1B2C3"}
    assert scrub_text(f"{key}=A1B2C3 ok") == f"{key}=A1B2C3 ok"


def test_keep_keys_remove_whole_names_only() -> None:
    """scrub_keep_keys takes exactly the named keys off (any case/separator style), not keys
    that merely contain the name, and never lets a card number through."""
    options = ScrubOptions(keep_keys=frozenset({"token_type", "pin_verified"}))
    assert not is_secret_key("token_type", options)
    assert not is_secret_key("tokenType", options)
    assert not is_secret_key("PIN-VERIFIED", options)
    assert is_secret_key("token", options)
    assert is_secret_key("access_token", options)
    assert is_secret_key("token_type_hint", options)
    value = {"token_type": "Bearer 4111 1111 1111 1111", "token": "abc"}
    assert scrub_value(value, options=options) == {
        "token_type": "Bearer XXXXXXXXXXXX1111",
        "token": REDACTED,
    }
    assert scrub_text("token_type=Bearer ok", options=options) == "token_type=Bearer ok"


def test_secret_keys_add_names() -> None:
    """scrub_secret_keys adds names: approval codes can be made secret again."""
    options = ScrubOptions(secret_keys=frozenset({"auth_code", "merchant_ref"}))
    assert is_secret_key("auth_code", options)
    assert is_secret_key("x.merchant-ref", options)
    assert scrub_text("auth_code=A1B2C3", options=options) == f"auth_code={REDACTED}"


# --- fingerprints ---------------------------------------------------------------------------

SHAPES_OF_ONE_CARD = [
    "4111111111111111",
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
    "4111.1111.1111.1111",
    "\uff14\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11",
    "4111%201111%201111%201111",
    "ref4111111111111111USD",
]


def test_fingerprint_is_the_same_for_one_card_in_every_shape() -> None:
    """Every shape of one card gets one token, the one fingerprint() returns."""
    options = ScrubOptions(fingerprint_key="k-one")
    token = fingerprint("4111 1111 1111 1111", options=options)
    assert token is not None and TOKEN.fullmatch(token)
    for shape in SHAPES_OF_ONE_CARD:
        out = scrub_text(f"card {shape} ok", options=options)
        assert TOKEN.findall(out) == [token], (shape, out)
        assert "XXXXXXXXXXXX1111 " + token in out
        assert find_pans(out) == [] and scrub_text(out, options=options) == out


def test_different_keys_give_different_tokens_and_no_key_none() -> None:
    """Two keys, two unrelated tokens; no key: no token and no plain hash anywhere."""
    one = fingerprint("4111111111111111", key="key-one")
    two = fingerprint("4111111111111111", key="key-two")
    assert one and two and one != two
    assert fingerprint("4111111111111111") is None
    out = scrub_text("card 4111111111111111")
    assert out == "card XXXXXXXXXXXX1111" and "fp_" not in out
    assert fingerprint_key_id() is None
    ids = {fingerprint_key_id(ScrubOptions(fingerprint_key=k)) for k in ("key-one", "key-two")}
    assert len(ids) == 2 and all(re.fullmatch(r"k[0-9a-f]{8}", i or "") for i in ids)


def test_fingerprint_is_an_hmac_of_the_digits() -> None:
    """The token is the first 16 hex of HMAC-SHA256(key, ASCII digits)."""
    import hashlib
    import hmac

    expected = hmac.new(b"k", b"4111111111111111", hashlib.sha256).hexdigest()[:16]
    assert fingerprint("4111-1111-1111-1111", key="k") == "fp_" + expected
    assert fingerprint("4111111111111111", key=b"k") == "fp_" + expected


@pytest.mark.parametrize("bad", ["4111111111111112", "hello", "", "12345", "4111 1111"])
def test_fingerprint_refuses_what_is_not_a_card(bad: str) -> None:
    """A string that is not a card number is a ValueError, key or not."""
    with pytest.raises(ValueError, match="not a card number"):
        fingerprint(bad, key="k")


def test_key_never_shown() -> None:
    """Neither the options' nor the fingerprinter's repr shows the key."""
    options = ScrubOptions(fingerprint_key="s3cr3t-key-material")
    assert "s3cr3t" not in repr(options) and "s3cr3t" not in repr(options.fingerprinter)


def test_a_token_of_decimal_digits_is_never_masked_again() -> None:
    """A token whose hex digits are all decimal (about one in 1,900) and card-shaped is
    recognised by the masked number before it, so scrubbing stays idempotent."""
    line = "card XXXXXXXXXXXX1111 fp_4111111111111111 ok"
    assert find_pans(line) == [] and scrub_text(line) is line
    url = "/cards/XXXXXXXXXXXX1111%20fp_4111111111111111/x"
    assert find_pans(url) == []
    assert find_pans("fp_4111111111111111") != []  # without the masked number: a card


def test_fingerprints_in_urls_and_keys() -> None:
    """URLs (path and query) and card numbers used as field names carry the token too."""
    options = ScrubOptions(fingerprint_key="k")
    token = fingerprint(SHAPES_OF_ONE_CARD[0], options=options)
    assert token is not None
    url = scrub_url("https://h/cards/4111111111111111/x?ref=4111-1111-1111-1111", options)
    assert url.count(token) == 2
    value = scrub_value({"4111111111111111": 1}, options=options)
    assert list(value) == [f"XXXXXXXXXXXX1111 {token}"]


@settings(max_examples=300, deadline=None)
@given(_brand_numbers(), st.sampled_from(sorted(GROUPINGS)), st.sampled_from([" ", "-"]))
def test_property_token_is_shape_independent(number: str, grouping: str, sep: str) -> None:
    """Whatever the brand, length and grouping, the scrubber writes fingerprint()'s token."""
    options = ScrubOptions(fingerprint_key="prop-key")
    text = "x " + sep.join(GROUPINGS[grouping](number)) + " y"
    assume(len(find_pans(text)) == 1)
    out = scrub_text(text, options=options)
    assert TOKEN.findall(out) == [fingerprint(number, options=options)]


@pytest.mark.parametrize(
    "text",
    ["pan=4111 1111 1111 1111 ok", "card_number: 4222 2222 2222 2", "pin=4111-1111-1111-1111"],
)
def test_a_secret_pair_holding_a_grouped_card_leaves_no_middle_digits(text: str) -> None:
    """A secret pair's value ends at a blank: the card number is masked before the pair is
    redacted, so no group of it survives after ``[REDACTED]``."""
    out = scrub_text(text)
    assert REDACTED in out and len([c for c in out if c.isdigit()]) <= 4, out
