"""Generated Prometheus rules: content, SLO checks, the CLI, and the dashboards."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from otelfin.cli import main
from otelfin.tools.metrics import UNREGISTERED_CODES_METRIC, all_expressions, build_rules


def test_rules_cover_p99_burn_codes_and_overflow() -> None:
    """Recording P99 per operation; alerts for SLO burn, unregistered codes and overflow."""
    rules = build_rules(slo=0.25, objective=0.99)
    names = [name for name, _ in all_expressions(rules)]
    exprs = dict(all_expressions(rules))
    assert "service_operation:otelfin_request_duration_seconds:p99_5m" in names
    assert "histogram_quantile(0.99, sum by (service, operation, le)" in exprs[names[0]]
    assert {"OtelfinLatencySLOFastBurn", "OtelfinLatencySLOSlowBurn",
            "OtelfinUnregisteredErrorCodes", "OtelfinMetricOverflow"} <= set(names)  # fmt: skip
    assert UNREGISTERED_CODES_METRIC in exprs["OtelfinUnregisteredErrorCodes"]
    assert "otelfin_metric_overflow_total" in exprs["OtelfinMetricOverflow"]
    assert "> 0.144" in exprs["OtelfinLatencySLOFastBurn"]


def test_slow_ratio_uses_the_slo_bucket_as_exposed() -> None:
    """The SLO bucket is matched with prometheus_client's le text (1.0, not 1)."""
    exprs = dict(all_expressions(build_rules(slo=1.0)))
    assert 'le="1.0"' in exprs["service_operation:otelfin_request_duration_slow:ratio_rate5m"]


def test_slo_must_be_a_bucket_bound_when_buckets_given() -> None:
    """An SLO between bounds would be interpolated: refused with the reason."""
    with pytest.raises(ValueError, match="not one of the histogram's bucket bounds"):
        build_rules(slo=0.3, buckets=[0.1, 0.25, 0.5])
    build_rules(slo=0.25, buckets=[0.1, 0.25, 0.5])


@pytest.mark.parametrize("kwargs", [{"objective": 1.0}, {"slo": 0}, {"by": []}])
def test_bad_rule_settings_are_value_errors(kwargs: dict[str, object]) -> None:
    """Impossible objectives, SLOs and empty aggregation are refused."""
    with pytest.raises(ValueError):
        build_rules(**kwargs)  # type: ignore[arg-type]


def test_cli_rules_build_writes_yaml(tmp_path: Path) -> None:
    """`otelfin rules build -o FILE` writes loadable YAML with both groups."""
    out = tmp_path / "rules.yml"
    assert main(["rules", "build", "--slo", "0.5", "-o", str(out)]) == 0
    data = yaml.safe_load(out.read_text())
    assert [g["name"] for g in data["groups"]] == ["otelfin-recording", "otelfin-alerts"]


def test_cli_rules_build_bad_slo_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """An SLO that is not among --buckets is exit 2 with the reason."""
    assert main(["rules", "build", "--slo", "0.3", "--buckets", "0.1,0.25"]) == 2
    assert "bucket bounds" in capsys.readouterr().err
