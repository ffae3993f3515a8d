"""configure() keywords: a misspelt pillar option is refused at start-up, not ignored."""

from __future__ import annotations

import pytest

import otelfin


def test_misspelt_option_is_a_type_error_naming_the_right_one() -> None:
    """configure(metric_port=...) raises TypeError naming metrics_port (was silently ignored)."""
    with pytest.raises(TypeError, match="'metric_port'; did you mean 'metrics_port'"):
        otelfin.configure(service_name="payment-gateway", metric_port=9464)


def test_documented_pillar_options_are_accepted() -> None:
    """Every pillar option the docs name is still accepted."""
    config = otelfin.configure(
        service_name="payment-gateway",
        transports=False,
        metrics_slo=0.25,
        metrics_p99=0.3,
        metrics_labels=["channel"],
        metrics_max_series=50,
        metrics_exemplars=False,
        stdlib_bridge=False,
        stdlib_error_code="NET-002",
        secret_keys=["iban"],
        max_error_code_labels=10,
        scrub_all_spans="auto",
    )
    assert config.options["metrics_max_series"] == 50


def test_transports_as_a_string_names_transports() -> None:
    """transports="grpc,nats" picks those two (a string was split into letters and refused)."""
    from otelfin.instrument import transports

    otelfin.configure(service_name="payment-gateway", transports="grpc, nats")
    assert sorted(transports.installed()) == ["grpc", "nats"]
