"""The clean-value memo of span attribute scrubbing (``ScrubOptions.clean_values``).

Span attribute values repeat from request to request, so a value found clean is remembered per
options object and not scanned again. What must hold: a remembered value gives exactly what a
fresh scan gives, a value that needed masking is never remembered, the memo is bounded, and
other options never see it.
"""

from __future__ import annotations

import pytest

from otelfin.scrub import ScrubOptions, _walk, scrub_attributes

PAN = "4111111111111111"

# (key, value): plain text, URL and query keys; clean values and values that need work.
CASES = [
    ("http.host", "api.acquirer.example:8443"),
    ("http.user_agent", "Mozilla/5.0 (X11; Linux x86_64) payment-sdk/4.2"),
    ("http.url", "https://api.example/pay?token=abcdef123456"),
    ("http.url", "https://api.example/pay?page=2"),
    ("http.target", "/pay?sig=abcdef12&card=" + PAN),
    ("url.query", "token=abcdef123456&page=2"),
    ("url.query", "page=2&size=50"),
    ("payment.note", f"card {PAN} declined"),
    ("payment.note", "password=hunter2 retry"),
    ("payment.note", "approval code A1B2C3 at 2026-12-07T10:00:00Z"),
]


def scrub_each(options: ScrubOptions) -> list[object]:
    return [scrub_attributes({key: value}, options)[key] for key, value in CASES]  # type: ignore[index]


def test_remembered_values_scrub_as_a_fresh_scan_does() -> None:
    warm = ScrubOptions()
    first = scrub_each(warm)
    # Every key sees every value once, so a value remembered under one kind (text, URL,
    # query) is offered under the others too.
    for key, _ in CASES:
        for _, value in CASES:
            scrub_attributes({key: value}, warm)
    again = scrub_each(warm)
    cold = scrub_each(ScrubOptions())
    assert again == first == cold
    assert any(len(memo) for memo in warm.clean_values)
    for key, value in CASES:
        assert scrub_attributes({key: value}, warm) == scrub_attributes(
            {key: value}, ScrubOptions()
        )


def test_values_that_needed_masking_are_never_remembered() -> None:
    options = ScrubOptions()
    attributes = {"payment.note": f"card {PAN} declined", "http.url": "https://x/p?token=abcdef1"}
    for _ in range(3):
        out = scrub_attributes(attributes, options)
        assert out is not attributes
        assert PAN not in str(out) and "abcdef1" not in str(out)
    remembered = [value for memo in options.clean_values for value in memo]
    assert all(PAN not in value and "abcdef1" not in value for value in remembered)


def test_clean_attributes_come_back_as_the_same_mapping() -> None:
    options = ScrubOptions()
    attributes = {"http.host": "api.acquirer.example:8443", "http.route": "/pay/{id}"}
    assert scrub_attributes(attributes, options) is attributes
    assert "api.acquirer.example:8443" in options.clean_values[0]
    assert "/pay/{id}" in options.clean_values[1]
    assert scrub_attributes(attributes, options) is attributes


def test_the_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_walk, "_CLEAN_MAX", 50)
    options = ScrubOptions()
    for i in range(500):
        scrub_attributes({"http.host": f"host-{i}.example"}, options)
        assert len(options.clean_values[0]) <= 50
    long_value = "x" * (_walk._CLEAN_MAX_LEN + 1)
    scrub_attributes({"http.host": long_value}, options)
    assert long_value not in options.clean_values[0]


def test_other_options_never_see_the_memo() -> None:
    lenient = ScrubOptions()
    value = "sessionhint=abc123 region=eu"
    assert scrub_attributes({"payment.note": value}, lenient) == {"payment.note": value}
    assert value in lenient.clean_values[0]
    strict = ScrubOptions(secret_keys={"sessionhint"})
    assert scrub_attributes({"payment.note": value}, strict) == {
        "payment.note": "sessionhint=[REDACTED] region=eu"
    }
