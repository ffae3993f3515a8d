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
    """An SLO between bounds matches no series: refused, naming the nearest bounds."""
    with pytest.raises(ValueError, match=r"slo 0.3 is not a bucket bound .*nearest: 0.25 and 0.5"):
        build_rules(slo=0.3, buckets=[0.1, 0.25, 0.5])
    build_rules(slo=0.25, buckets=[0.1, 0.25, 0.5])
    build_rules(slo=0.3)  # no bounds given: the default layout of a service with that SLO


@pytest.mark.parametrize("kwargs", [{"objective": 1.0}, {"slo": 0}, {"by": []}])
def test_bad_rule_settings_are_value_errors(kwargs: dict[str, object]) -> None:
    """Impossible objectives, SLOs and empty aggregation are refused."""
    with pytest.raises(ValueError):
        build_rules(**kwargs)  # type: ignore[arg-type]


def test_cli_rules_build_writes_yaml(tmp_path: Path) -> None:
    """`otelfin rules build -o FILE` writes loadable YAML with both groups."""
    out = tmp_path / "rules.yml"
    assert main(["rules", "build", "--slo", "0.25", "-o", str(out)]) == 0
    data = yaml.safe_load(out.read_text())
    assert [g["name"] for g in data["groups"]] == ["otelfin-recording", "otelfin-alerts"]


def test_cli_rules_build_bad_slo_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """An SLO that is not among --buckets is exit 2 with the reason."""
    assert main(["rules", "build", "--slo", "0.3", "--buckets", "0.1,0.25"]) == 2
    assert "not a bucket bound of --buckets (nearest: 0.25)" in capsys.readouterr().err


def test_cli_rules_build_checks_the_default_layout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --buckets the SLO is checked against the layout configure() builds from the
    same settings: --slo 0.3 is refused for a service on the default SLO (0.25), naming the
    nearest bounds and writing nothing, and accepted once the service's SLO is 0.3."""
    monkeypatch.delenv("OTELFIN_METRICS_SLO", raising=False)
    monkeypatch.delenv("OTELFIN_METRICS_BUCKETS", raising=False)
    out = tmp_path / "rules.yml"
    assert main(["rules", "build", "--slo", "0.3", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "slo 0.3 is not a bucket bound of the default layout for metrics_slo=0.25" in err
    assert "nearest: 0.2925 and 0.3042" in err
    assert not out.exists()
    for slo in ("0.25", "0.2925", "1.02"):  # the SLO and any bound of the layout
        assert main(["rules", "build", "--slo", slo, "-o", str(out)]) == 0
        assert f'le="{slo}"' in out.read_text()
    monkeypatch.setenv("OTELFIN_METRICS_SLO", "0.3")
    assert main(["rules", "build", "--slo", "0.3", "-o", str(out)]) == 0
    assert main(["dashboards", "build", "--slo", "0.4", "--output-dir", str(tmp_path)]) == 2
    assert "not a bucket bound of the default layout for metrics_slo=0.3" in (
        capsys.readouterr().err
    )


def _promtool() -> str:
    import os
    import shutil

    found = shutil.which("promtool")
    if found:
        return found
    reason = "promtool is not installed (Debian package 'prometheus' provides it)"
    if os.environ.get("OTELFIN_REQUIRE_INTEGRATION") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


_SERIES = (
    "otelfin_request_duration_seconds_count"
    '{{service="api",operation="POST /pay",channel="{channel}",outcome="{outcome}"}}'
)


def test_error_ratio_excludes_declines_and_decline_jump_fires(tmp_path: Path) -> None:
    """promtool test rules: declines never burn the error budget; a channel whose decline ratio
    jumps (5% -> 37%) fires OtelfinDeclineRatioJump, a steady one does not."""
    import subprocess

    promtool = _promtool()
    rules = build_rules(slo=0.25, objective=0.99)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules), encoding="utf-8")
    # Rules are evaluated every minute (as Prometheus does): promtool evaluates the recording and
    # the alerting group in no fixed order, and a recorded sample older than the 5m lookback
    # would look absent to the alert. 10-minute input samples over 33 h.
    # card: 100 ok + 5 declined + 1 error per step, throughout.
    # wallet: 100 ok + 5 declined per step, then 60 declined per step for the last 3 hours.
    steady, jump = 180, 18
    steps = steady + jump

    def grows(channel: str, outcome: str, by: int) -> dict[str, str]:
        return {
            "series": _SERIES.format(channel=channel, outcome=outcome),
            "values": f"0+{by}x{steps}",
        }

    series = [
        grows("card", "ok", 100),
        grows("card", "declined", 5),
        grows("card", "error", 1),
        grows("wallet", "ok", 100),
        {
            "series": _SERIES.format(channel="wallet", outcome="declined"),
            "values": f"0+5x{steady} {5 * steady + 60}+60x{jump - 1}",
        },
    ]
    end = f"{(steady + jump) * 10}m"
    # Per step at the end: 1 error in 100 + 5 + 1 + 100 + 60 requests (declines are not errors).
    per_step = 100 + 5 + 1 + 100 + 60
    (jump_rule,) = [r for g in rules["groups"] for r in g["rules"]
                    if r.get("alert") == "OtelfinDeclineRatioJump"]  # fmt: skip
    tests = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "10m",
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": "round(service_operation:otelfin_request_duration_errors"
                        f":ratio_rate1h * {per_step * 1000})",
                        "eval_time": end,
                        "exp_samples": [
                            {
                                "labels": '{service="api",operation="POST /pay"}',
                                "value": 1000,
                            }
                        ],
                    }
                ],
                "alert_rule_test": [
                    {
                        "eval_time": end,
                        "alertname": "OtelfinDeclineRatioJump",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "ticket",
                                    "service": "api",
                                    "channel": "wallet",
                                },
                                "exp_annotations": {
                                    "summary": "Channel wallet declines 37.5% of its requests, "
                                    "over twice its usual share",
                                    "description": jump_rule["annotations"]["description"],
                                },
                            }
                        ],
                    },
                    {"eval_time": end, "alertname": "OtelfinErrorBudgetFastBurn", "exp_alerts": []},
                    {"eval_time": end, "alertname": "OtelfinErrorBudgetSlowBurn", "exp_alerts": []},
                ],
            }
        ],
    }  # fmt: skip
    (tmp_path / "test.yml").write_text(yaml.safe_dump(tests), encoding="utf-8")
    check = subprocess.run([promtool, "check", "rules", str(tmp_path / "rules.yml")],
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    run = subprocess.run([promtool, "test", "rules", str(tmp_path / "test.yml")],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
