"""OTLP for logs and metrics: a real receiver (HTTP and gRPC, official protobufs) gets them.

``OTEL_LOGS_EXPORTER=otlp`` / ``OTEL_METRICS_EXPORTER=otlp`` with OpenTelemetry's endpoint and
protocol variables: every log line also arrives as an OTLP log record (masked, trace context,
``error_code`` attribute), the Prometheus registry's series arrive as OTLP metrics (same names,
labels, bucket bounds and counts, exemplars with trace ids), the JSON lines and the registry
stay. A receiver down for a while loses nothing and duplicates nothing; one down for good is
counted, never silently.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import otelfin
from otelfin import _internal
from otelfin.logging import capture_logs
from otelfin.metrics import current_metrics
from tests._otlp_receiver import GrpcReceiver, HttpReceiver, Received, attributes

CARD = "4111 1111 1111 1111"


@otelfin.traced(name="payments.authorise", attributes={"payment.channel": "channel"})
def authorise(card: str, channel: str, seq: int) -> str:
    log = otelfin.get_logger()
    log.info("authorising", card=card, seq=seq)
    if seq % 5 == 4:
        log.error("declined", error_code="PAY-012", seq=seq)
    return "ok"


def _use(monkeypatch: pytest.MonkeyPatch, endpoint: str, protocol: str, **more: str) -> None:
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    for name, value in more.items():
        monkeypatch.setenv(name, value)


def _wait(condition: Any, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)


def _registry_series(families: list[Any]) -> dict[str, set[tuple[tuple[str, str], ...]]]:
    """Metric name -> the label sets of its series, as /metrics shows them (no le)."""
    out: dict[str, set[tuple[tuple[str, str], ...]]] = {}
    for family in families:
        name = family.name + ("_total" if family.type == "counter" else "")
        if family.type not in ("counter", "gauge", "histogram"):
            continue
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            out.setdefault(name, set()).add(labels)
    return out


def _otlp_series(metrics: dict[str, Any]) -> dict[str, set[tuple[tuple[str, str], ...]]]:
    out: dict[str, set[tuple[tuple[str, str], ...]]] = {}
    for name, metric in metrics.items():
        kind = metric.WhichOneof("data")
        if kind is None:  # a family without series yet: nothing to compare
            continue
        data = getattr(metric, kind)
        for point in data.data_points:
            labels = tuple(sorted(attributes(point.attributes).items()))
            out.setdefault(name, set()).add(labels)
    return out


def _check_logs(received: Received, lines: list[dict[str, Any]], count: int) -> None:
    records = [(res, rec) for res, rec in received.log_records() if rec.body.string_value]
    mine = [(res, rec) for res, rec in records if attributes(rec.attributes).get("seq") is not None]
    json_mine = [line for line in lines if "seq" in line]
    assert len(mine) == len(json_mine) == count + count // 5, (len(mine), len(json_mine))
    seen = sorted((rec.body.string_value, attributes(rec.attributes)["seq"]) for _, rec in mine)
    assert seen == sorted((line["event"], line["seq"]) for line in json_mine)  # once each
    for (resource, record), line in zip(
        sorted(mine, key=lambda r: (attributes(r[1].attributes)["seq"], r[1].body.string_value)),
        sorted(json_mine, key=lambda line: (line["seq"], line["event"])),
        strict=True,
    ):
        attrs = attributes(record.attributes)
        assert record.trace_id.hex() == line["trace_id"] and record.span_id.hex() == line["span_id"]
        assert record.severity_text == line["level"].upper()
        assert attributes(resource.attributes)["service.name"] == "payments-api"
        if line["level"] == "error":
            assert attrs["error_code"] == "PAY-012" and record.severity_number == 17
        else:
            assert attrs["card"] == line["card"] and "1111" in attrs["card"]
        assert CARD not in str(record) and CARD.replace(" ", "") not in str(record)


def _check_metrics(received: Received, families: list[Any], count: int) -> None:
    """``families``: the registry's, collected before shutdown (which unregisters them)."""
    metrics = received.last_metrics()
    want = _registry_series(families)
    got = _otlp_series(metrics)
    missing = {n: want[n] - got.get(n, set()) for n in want if want[n] - got.get(n, set())}
    assert not missing, f"series on /metrics but not over OTLP: {missing}"
    hist = metrics["otelfin_request_duration_seconds"].histogram
    assert hist.aggregation_temporality == 2  # cumulative: a retried point never counts twice
    (point,) = [p for p in hist.data_points if attributes(p.attributes)["channel"] == "wallet"]
    family = next(f for f in families if f.name == "otelfin_request_duration_seconds")
    bounds = sorted(
        {float(s.labels["le"]) for s in family.samples if s.name.endswith("_bucket")}
        - {float("inf")}
    )
    assert list(point.explicit_bounds) == bounds  # the same bucket layout, SLO bound included
    assert point.count == count and sum(point.bucket_counts) == count
    assert point.exemplars and len(point.exemplars[0].trace_id) == 16
    total = metrics["otelfin_requests_total"].sum
    assert total.is_monotonic and sum(p.as_double for p in total.data_points) == count


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_logs_and_metrics_reach_the_receiver(
    monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    """Each signal over each protocol: masked records with trace ids, the registry's series."""
    receiver = HttpReceiver() if protocol == "http/protobuf" else GrpcReceiver()
    with receiver:
        _use(monkeypatch, receiver.endpoint, protocol)
        registry = CollectorRegistry()
        otelfin.configure("payments-api", metrics_registry=registry)
        with capture_logs(echo=True) as lines:
            for seq in range(20):
                authorise(CARD, "wallet", seq)
        families = list(registry.collect())
        otelfin.shutdown()
        _check_logs(receiver.received, list(lines), 20)
        _check_metrics(receiver.received, families, 20)
        assert not any(_internal.otlp_health())


def test_per_signal_endpoints_and_protocols(monkeypatch: pytest.MonkeyPatch) -> None:
    """Logs over gRPC to one receiver, metrics over HTTP to another, by per-signal variables."""
    with GrpcReceiver() as logs_rx, HttpReceiver() as metrics_rx:
        monkeypatch.setenv("OTEL_LOGS_EXPORTER", "otlp")
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "grpc")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", logs_rx.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf")
        monkeypatch.setenv(
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", f"{metrics_rx.endpoint}/v1/metrics"
        )
        otelfin.configure("payments-api", metrics_registry=CollectorRegistry())
        authorise(CARD, "wallet", 0)
        otelfin.shutdown()
        assert list(logs_rx.received.log_records()) and not logs_rx.received.metrics
        assert metrics_rx.received.metrics and not metrics_rx.received.logs


def test_receiver_down_for_a_while_loses_and_duplicates_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The collector restarts mid-run: every record arrives once, the totals are exact."""
    with HttpReceiver() as receiver:
        _use(monkeypatch, receiver.endpoint, "http/protobuf", OTEL_METRIC_EXPORT_INTERVAL="300")
        registry = CollectorRegistry()
        otelfin.configure("payments-api", metrics_registry=registry)
        with capture_logs(echo=True) as lines:
            for seq in range(10):
                authorise(CARD, "wallet", seq)
            receiver.down()  # connection refused from now on
            for seq in range(10, 30):
                authorise(CARD, "wallet", seq)
            time.sleep(1.5)  # several batch and push attempts fail meanwhile
            receiver.up()
            for seq in range(30, 40):
                authorise(CARD, "wallet", seq)
            # The exporters' retries (backoff 1 s, 2 s, ...) deliver what waited; shutdown's
            # own flush is bounded (2 s) and could end inside a backoff on a busy machine.
            pushes = len(receiver.received.metrics)
            _wait(lambda: len(list(receiver.received.log_records())) >= 48)
            _wait(lambda: len(receiver.received.metrics) > pushes)
        families = list(registry.collect())
        otelfin.shutdown()
    _check_logs(receiver.received, list(lines), 40)
    _check_metrics(receiver.received, families, 40)
    dropped, _failures = _internal.otlp_health()
    assert not dropped  # nothing was given up: the exporter's retries covered the outage


@pytest.mark.otelfin_internal_errors
def test_receiver_gone_for_good_is_counted_not_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    """No receiver at all: every record is accounted for as dropped, every push as failed."""
    receiver = HttpReceiver()
    receiver.down()
    _use(
        monkeypatch,
        receiver.endpoint,
        "http/protobuf",
        OTEL_EXPORTER_OTLP_TIMEOUT="0.5",
        OTEL_METRIC_EXPORT_INTERVAL="200",
        OTEL_TRACES_EXPORTER="none",
    )
    registry = CollectorRegistry()
    otelfin.configure("payments-api", metrics_registry=registry)
    with capture_logs(echo=True) as lines:
        for seq in range(10):
            authorise(CARD, "wallet", seq)
        health = registry.get_sample_value
        _wait(
            lambda: (health("otelfin_logs_dropped_total", {"reason": "export_failed"}) or 0) >= 12
        )
        # While it runs, /metrics says so.
        assert health("otelfin_logs_dropped_total", {"reason": "export_failed"}) >= 12
        failed = {"signal": "metrics", "reason": "failure"}
        assert (health("otelfin_otlp_export_failures_total", failed) or 0) >= 1
        otelfin.shutdown()
    dropped, failures = _internal.otlp_health()
    # Every line written (otelfin's own warnings about the outage included) was sent to the
    # exporter and given up, or still queued at the shutdown deadline: none unaccounted for.
    assert sum(dropped.values()) == len(lines) >= 12, (dropped, len(lines))
    assert failures[("logs", "failure")] >= 1
    assert not receiver.received.logs


def test_without_otlp_settings_the_exporters_are_not_imported() -> None:
    """configure() alone never imports the OTLP log/metric exporters (start-up time)."""
    code = (
        "import sys, otelfin; otelfin.configure('x'); "
        "print(sorted(m for m in sys.modules if m.endswith(('_log_exporter', 'metric_exporter'))"
        " or m == 'otelfin.logging._otlp' or m == 'otelfin.metrics._otlp'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_bad_protocol_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """http/json (no Python exporter) or a typo is a ValueError naming the variable."""
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/json")
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_LOGS_PROTOCOL"):
        otelfin.configure("payments-api")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp,carrier-pigeon")
    with pytest.raises(ValueError, match="OTEL_METRICS_EXPORTER"):
        otelfin.configure("payments-api")


def test_json_lines_off_sends_logs_over_otlp_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTELFIN_LOG_LINES=false with OTEL_LOGS_EXPORTER=otlp: no JSON line, the record arrives."""
    with HttpReceiver() as receiver:
        _use(monkeypatch, receiver.endpoint, "http/protobuf", OTELFIN_LOG_LINES="false")
        monkeypatch.delenv("OTEL_METRICS_EXPORTER")
        otelfin.configure("payments-api", metrics_registry=CollectorRegistry())
        with capture_logs() as lines:
            otelfin.get_logger().info("only over otlp", seq=1)
        otelfin.shutdown()
    assert not lines
    assert [r.body.string_value for _, r in receiver.received.log_records()] == ["only over otlp"]


assert current_metrics is not None  # imported for readers: the registry otelfin fills


JOB = """
import logging

class Ledger:
    def post(self, seq, card):
        logging.getLogger("ledger").info("posted %s for card %s", seq, card)
        if seq == 2:
            logging.getLogger("ledger").error("posting failed", extra={"error_code": "LEDGER-004"})
        return seq

if __name__ == "__main__":
    for seq in range(3):
        Ledger().post(seq, "4111 1111 1111 1111")
"""


def test_zero_code_sends_logs_and_metrics_over_otlp(tmp_path: Any) -> None:
    """`opentelemetry-instrument python job.py`, no otelfin line: the same OTLP logs and
    metrics, flushed when the process exits."""
    from tests.integration._procs import BIN, clean_env

    (tmp_path / "job.py").write_text(JOB)
    with HttpReceiver() as receiver:
        env = clean_env(
            OTEL_PYTHON_DISTRO="otelfin",
            OTEL_PYTHON_CONFIGURATOR="otelfin",
            OTEL_SERVICE_NAME="ledger",
            OTEL_TRACES_EXPORTER="none",
            OTEL_LOGS_EXPORTER="otlp",
            OTEL_METRICS_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTELFIN_METHODS_INCLUDE="__main__:Ledger.post",
        )
        done = subprocess.run(
            [str(BIN / "opentelemetry-instrument"), sys.executable, "job.py"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(done.stdout.splitlines()) == 4  # the JSON lines are still written
    records = [r for _, r in receiver.received.log_records()]
    bodies = sorted(r.body.string_value for r in records)
    assert bodies == sorted(
        ["posted 0 for card XXXXXXXXXXXX1111", "posted 1 for card XXXXXXXXXXXX1111",
         "posted 2 for card XXXXXXXXXXXX1111", "posting failed"]
    )  # fmt: skip
    failed = next(r for r in records if r.body.string_value == "posting failed")
    assert attributes(failed.attributes)["error_code"] == "LEDGER-004"
    assert len(failed.trace_id) == 16 and any(failed.trace_id)
    metrics = receiver.received.last_metrics()
    calls = metrics["otelfin_request_duration_seconds"].histogram.data_points
    assert sum(p.count for p in calls) == 3


PRELOADED = """
import os
import time

import otelfin

otelfin.configure("ledger-workers")  # in gunicorn's master (--preload); workers are forked


@otelfin.traced(name="post")
def post(path):
    otelfin.get_logger().info("posted", path=path, pid=os.getpid())
    time.sleep(0.05)  # a busy worker makes the other one accept the next connection


def app(environ, start_response):
    if environ["PATH_INFO"].startswith("/post"):
        post(environ["PATH_INFO"])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""


def test_forked_gunicorn_workers_each_send_their_own(tmp_path: Any) -> None:
    """gunicorn --preload -w 2: configure() ran in the master; each forked worker exports its
    records once and pushes its own cumulative series (its own service.instance.id)."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.integration._procs import Proc, clean_env, free_port, get, wait_http

    (tmp_path / "preloaded.py").write_text(PRELOADED)
    port = free_port()
    with HttpReceiver() as receiver:
        env = clean_env(
            OTEL_LOGS_EXPORTER="otlp",
            OTEL_METRICS_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_TRACES_EXPORTER="none",
            PYTHONPATH=str(tmp_path),
        )
        argv = [sys.executable, "-m", "gunicorn", "--preload", "-w", "2"]
        proc = Proc([*argv, "-b", f"127.0.0.1:{port}", "preloaded:app"], tmp_path, env)
        wait_http(f"http://127.0.0.1:{port}/ready", proc)
        with ThreadPoolExecutor(4) as pool:
            statuses = list(
                pool.map(lambda i: get(f"http://127.0.0.1:{port}/post/{i}")[0], range(20))
            )
        assert statuses == [200] * 20
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0, proc.stderr[-3000:]
    posted = [
        attributes(r.attributes)
        for _, r in receiver.received.log_records()
        if r.body.string_value == "posted"
    ]
    assert sorted(a["path"] for a in posted) == sorted(f"/post/{i}" for i in range(20))
    workers = {a["pid"] for a in posted}
    # The latest point of each worker's stream (by service.instance.id) adds up to 20 calls.
    latest: dict[str, int] = {}
    for request in receiver.received.metrics:
        for rm in request.resource_metrics:
            instance = attributes(rm.resource.attributes)["service.instance.id"]
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == "otelfin_request_duration_seconds":
                        latest[instance] = sum(p.count for p in metric.histogram.data_points)
    assert sum(latest.values()) == 20, latest
    # One stream per process: each worker's, and the master's own (it configured; no calls).
    assert len([n for n in latest.values() if n]) == len(workers) >= 1


def test_delta_preference_is_said_not_silently_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cumulative only: asking for delta gives one warning naming the variable."""
    with HttpReceiver() as receiver:
        _use(monkeypatch, receiver.endpoint, "http/protobuf")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")
        with capture_logs() as lines:
            otelfin.configure("payments-api", metrics_registry=CollectorRegistry())
            otelfin.configure("payments-api", metrics_registry=CollectorRegistry())
            authorise(CARD, "wallet", 0)
        otelfin.shutdown()
    said = [line for line in lines if "TEMPORALITY_PREFERENCE=delta" in line["event"]]
    assert len(said) == 1 and said[0]["level"] == "warning"
    pushed = receiver.received.last_metrics()
    assert pushed["otelfin_request_duration_seconds"].histogram.aggregation_temporality == 2
