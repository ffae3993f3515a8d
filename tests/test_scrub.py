"""The shared PAN/secret scrubber: definition, masking modes, nested values, spans."""

from __future__ import annotations

import time

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, Status, StatusCode

from otelfin import scrub
from otelfin.scrub import (
    REDACTED,
    ScrubbingSpanExporter,
    ScrubOptions,
    find_pans,
    is_secret_key,
    luhn_valid,
    scrub_span,
    scrub_text,
    scrub_value,
)

VISA = "4111111111111111"
AMEX = "378282246310005"
VISA19 = "4111111111111111110"  # 19 digits; Luhn-valid (checked below)


pytestmark = pytest.mark.usefixtures("scrub_defaults")


def set_pan_mask(mode: str) -> None:
    """Make ``mode`` the default mask (what otelfin.configure(pan_mask=...) does)."""
    scrub.configure(ScrubOptions(pan_mask=mode))  # type: ignore[arg-type]


def test_luhn_reference_numbers() -> None:
    """luhn_valid accepts the well-known test PANs and rejects a changed digit."""
    assert luhn_valid(VISA) and luhn_valid(AMEX) and luhn_valid(VISA19)
    assert not luhn_valid("4111111111111112")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"card {VISA} ok", "card XXXXXXXXXXXX1111 ok"),
        ("4111-1111-1111-1111", "XXXXXXXXXXXX1111"),
        ("4111 1111 1111 1111", "XXXXXXXXXXXX1111"),
        (f"amex={AMEX};", "amex=XXXXXXXXXXX0005;"),
        (f"x {VISA} 12 25", "x XXXXXXXXXXXX1111 12 25"),
        ("exp 12 4111 1111 1111 1111", "exp 12 XXXXXXXXXXXX1111"),
        (f'{{"note":"{VISA}"}}', '{"note":"XXXXXXXXXXXX1111"}'),
        (f"\n{VISA}\n", "\nXXXXXXXXXXXX1111\n"),
        (f"é{VISA}é", "éXXXXXXXXXXXX1111é"),
        (f"paid with {VISA}.", "paid with XXXXXXXXXXXX1111."),
        (VISA19, "XXXXXXXXXXXXXXX1110"),
    ],
)
def test_masks_card_numbers_last4(text: str, expected: str) -> None:
    """Luhn-valid 13-19 digit runs (grouped or not) are masked to the last four digits."""
    assert scrub_text(text) == expected
    assert find_pans(text) and not find_pans(scrub_text(text))


@pytest.mark.parametrize(
    "text",
    [
        "4111111111111112",  # Luhn-invalid order id
        f"a{VISA}",  # glued to hex letters: part of a hex token (an id, a hash)
        f"{VISA}b",
        VISA * 2,  # 32 digits: longer than any card number
        "12345678901234567890123",
        "4bf92f3577b34da6a3ce929d0e0e4736",  # a hex trace id
        "123e4567-e89b-12d3-a456-426614174000",  # a UUID
        f"0.{VISA}",  # the digits of a fraction, not a card
        "ord-20261125-000004",  # 8 + 6 digit groups: an order id, whatever its Luhn sum
        "2026-11-25T07:30:41.123456+00:00",
        "short",
    ],
)
def test_leaves_non_card_numbers(text: str) -> None:
    """Invalid, too long, glued or non-grouped digit runs are left exactly as they were."""
    assert scrub_text(text) is text
    assert find_pans(text) == []


def test_first6last4_mode() -> None:
    """The first6last4 mode keeps the BIN and the last four digits."""
    set_pan_mask("first6last4")
    assert scrub_text(f"{VISA} / {AMEX}") == "411111XXXXXX1111 / 378282XXXXX0005"
    assert scrub_text(VISA, mask="last4") == "XXXXXXXXXXXX1111"


def test_bad_mask_mode_is_rejected() -> None:
    """An unknown mask mode is a ValueError, not a silent default."""
    with pytest.raises(ValueError, match="first6last4"):
        set_pan_mask("none")


def test_find_pans_on_bytes_matches_str() -> None:
    """Raw UTF-8 bytes are scanned with the same boundaries as the decoded text."""
    wide = "4111 1111 1111 1111".translate({ord(d): 0xFF10 + int(d) for d in "0123456789"})
    text = f"paid {VISA} at café; ref 4111111111111112 x{AMEX} {wide}"
    found = [VISA.encode(), AMEX.encode(), wide.encode()]
    assert [text.encode()[a:b] for a, b in find_pans(text.encode())] == found
    assert [text[a:b] for a, b in find_pans(text)] == [VISA, AMEX, wide]


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("password", True),
        ("db_password", True),
        ("X-Api-Key", True),
        ("api_key", True),
        ("cardNumber", True),
        ("card_number", True),
        ("http.request.header.authorization", True),
        ("set-cookie", True),
        ("CVV", True),
        ("pin", True),
        ("pan", True),
        ("accessToken", True),
        ("pinned", False),
        ("spin", False),
        ("company", False),
        ("amount", False),
        ("panel", False),
    ],
)
def test_secret_keys(key: str, secret: bool) -> None:
    """Secret key names match by whole word, camelCase and separators included."""
    assert is_secret_key(key) is secret


def test_secret_keys_are_extendable() -> None:
    """ScrubOptions(secret_keys=...) makes a new name (normalised) a secret."""
    assert not is_secret_key("merchant_iin")
    options = ScrubOptions(secret_keys=frozenset({"merchant-iin"}))
    assert is_secret_key("merchant_iin", options)
    assert not is_secret_key("merchant_iin")  # the default options are left alone


def test_scrub_value_nested() -> None:
    """Dicts, lists and tuples at any depth are scrubbed; untouched values keep identity."""
    clean = {"a": [1, "x"], "b": ("y",)}
    assert scrub_value(clean) is clean
    dirty = {
        "outer": [{"password": "hunter2", "n": int(VISA)}, (f"card {VISA}",)],
        "ok": 5,
        "f": 0.30000000000000004,
    }
    assert scrub_value(dirty) == {
        "outer": [{"password": REDACTED, "n": "XXXXXXXXXXXX1111"}, ("card XXXXXXXXXXXX1111",)],
        "ok": 5,
        "f": 0.30000000000000004,
    }
    assert dirty["outer"][0]["password"] == "hunter2"  # the caller's object is not mutated


def test_scrub_value_survives_cycles() -> None:
    """A self-referencing structure is cut at the depth limit instead of recursing forever."""
    loop: list[object] = [VISA]
    loop.append(loop)
    out = scrub_value(loop)
    assert out[0] == "XXXXXXXXXXXX1111"


def _finished_span() -> tuple[InMemorySpanExporter, TracerProvider]:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("other") as other:
        pass
    with tracer.start_as_current_span(
        f"GET /cards/{VISA}", links=[Link(other.get_span_context(), {"card": VISA})]
    ) as span:
        span.set_attribute("note", f"card {VISA}")
        span.set_attribute("http.request.header.authorization", "Bearer abc")
        span.set_attribute("ids", [VISA, "x"])
        try:
            raise ValueError("bad card 4111 1111 1111 1111")
        except ValueError as exc:
            span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"declined {VISA}"))
    return exporter, provider


def test_scrub_span_covers_every_field() -> None:
    """Name, attributes, exception message and stack trace, status and links are scrubbed."""
    exporter, _ = _finished_span()
    clean, dirty = exporter.get_finished_spans()
    assert scrub_span(clean) is clean
    out = scrub_span(dirty)
    assert out.name == "GET /cards/XXXXXXXXXXXX1111"
    assert out.attributes is not None
    assert out.attributes["note"] == "card XXXXXXXXXXXX1111"
    assert out.attributes["http.request.header.authorization"] == REDACTED
    assert out.attributes["ids"] == ("XXXXXXXXXXXX1111", "x")
    event = out.events[0].attributes
    assert event is not None
    assert event["exception.message"] == "bad card XXXXXXXXXXXX1111"
    assert "4111 1111" not in str(event["exception.stacktrace"])
    assert out.status.description == "declined XXXXXXXXXXXX1111"
    assert out.links[0].attributes == {"card": "XXXXXXXXXXXX1111"}
    assert out.get_span_context() == dirty.get_span_context()
    assert dirty.name == f"GET /cards/{VISA}"  # the SDK's span is left as it was


def test_scrubbing_exporter_wraps_foreign_exporters() -> None:
    """ScrubbingSpanExporter scrubs spans for exporters otelfin does not own."""
    source, _ = _finished_span()
    sink = InMemorySpanExporter()
    ScrubbingSpanExporter(sink).export(source.get_finished_spans())
    assert all(VISA not in str(s.to_json()) for s in sink.get_finished_spans())


@pytest.mark.parametrize(
    "unit",
    ["4 ", "1-", "1", "12345678901 ", "4111111111111111 ", "9" * 12 + " ", " ", "a1 "],
)
def test_adversarial_megabyte_is_linear(unit: str) -> None:
    """1 MB of worst-case shapes is scrubbed in seconds (quadratic work would take hours).

    The bound is two orders of magnitude above the measured figure (< 2 s on this machine):
    it catches a complexity regression, not a slow machine.
    """
    text = (unit * (1_000_000 // len(unit) + 1))[:1_000_000]
    started = time.perf_counter()
    out = scrub_text(text)
    assert find_pans(out) == []
    assert time.perf_counter() - started < 120
