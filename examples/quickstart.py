"""A runnable tour of otelfin's four pillars (until ``otelfin demo`` lands).

Run: ``make demo`` (or ``python examples/quickstart.py``). It traces a few payments, two of them
declined with registered business errors, and then shows:

1. a waterfall of each trace, read back from the OTLP/JSON span file otelfin wrote;
2. the RED metrics those calls produced (Prometheus exposition, with the SLO bucket);
3. the JSON log lines, with the card number masked and the trace ids filled in;
4. the result of validating that log file the way a CI job would.

Everything goes under ``build/quickstart/`` (``QUICKSTART_DIR`` to change it).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

import otelfin
from otelfin.logging import validate_file

log = otelfin.get_logger(component="quickstart")


@otelfin.traced(name="risk.score", attributes={"payment.channel": "channel"})
def score(amount: float, channel: str) -> float:
    return 0.9 if channel == "ecom" and amount > 500 else 0.1


@otelfin.traced(name="ledger.post")
def post_to_ledger(amount: float) -> str:
    return f"posting-{int(amount * 100)}"


@otelfin.traced(name="payment.process", kind="server", attributes={"payment.channel": "channel"})
def process_payment(amount: float, balance: float, card: str, channel: str = "pos") -> str:
    log.info("payment_received", amount=f"{amount:.2f}", card=card, channel=channel)
    if score(amount, channel) > 0.5:
        raise otelfin.OtelfinError("RISK-001", "Transaction blocked by fraud rules")
    if amount > balance:
        raise otelfin.OtelfinError("PAY-012", "Insufficient balance", amount=amount)
    return post_to_ledger(amount)


def waterfall(spans_file: str) -> None:
    traces: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with open(spans_file, encoding="utf-8") as fh:
        for line in fh:
            for rs in json.loads(line)["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    for span in ss["spans"]:
                        traces[span["traceId"]].append(span)
    print(f"== 1. traces: {sum(map(len, traces.values()))} spans in {len(traces)} traces")
    for trace_id, spans in traces.items():
        spans.sort(key=lambda s: int(s["startTimeUnixNano"]))
        t0 = int(spans[0]["startTimeUnixNano"])
        by_id = {s["spanId"]: s for s in spans}
        print(f"trace {trace_id}")
        for span in spans:
            depth, parent = 0, span.get("parentSpanId")
            while parent in by_id:
                depth, parent = depth + 1, by_id[parent].get("parentSpanId")
            attrs = {a["key"]: next(iter(a["value"].values())) for a in span["attributes"]}
            start_us = (int(span["startTimeUnixNano"]) - t0) / 1000
            dur_us = (int(span["endTimeUnixNano"]) - int(span["startTimeUnixNano"])) / 1000
            code = attrs.get("otelfin.error_code", "")
            name = "  " * depth + span["name"]
            print(f"  {name:<20} +{start_us:8.1f}us {dur_us:8.1f}us {code}")


def main() -> None:
    out_dir = os.environ.get("QUICKSTART_DIR") or os.path.join("build", "quickstart")
    os.makedirs(out_dir, exist_ok=True)
    spans_file = os.path.join(out_dir, "spans.jsonl")
    logs_file = os.path.join(out_dir, "logs.jsonl")
    for path in (spans_file, logs_file):
        if os.path.exists(path):
            os.remove(path)
    registry = CollectorRegistry()
    otelfin.configure(
        "quickstart-gateway",
        spans_file=spans_file,
        span_processor="simple",
        log_file=logs_file,
        metrics_registry=registry,
        metrics_slo=0.25,
    )
    payments = [
        (25.0, 100.0, "4111 1111 1111 1111", "pos"),
        (80.0, 50.0, "5500-0000-0000-0004", "pos"),
        (900.0, 5000.0, "4012888888881881", "ecom"),
    ]
    for amount, balance, card, channel in payments:
        try:
            process_payment(amount, balance, card, channel=channel)
            log.info("payment_authorised", amount=f"{amount:.2f}", channel=channel)
        except otelfin.OtelfinError as exc:
            log.warning("payment_declined", error_code=exc.code, amount=f"{amount:.2f}")
    exposition = generate_latest(registry).decode()
    otelfin.shutdown()

    waterfall(spans_file)
    print("\n== 2. RED metrics (excerpt)")
    for line in exposition.splitlines():
        if 'operation="payment.process"' in line and (
            line.startswith(
                (
                    "otelfin_request_errors_total{",
                    "otelfin_request_declines_total{",
                    "otelfin_requests_total{",
                )
            )
            or ("_bucket{" in line and 'le="0.25"' in line)
        ):
            print(" ", line)
    print(f"\n== 3. JSON logs -> {logs_file}")
    with open(logs_file, encoding="utf-8") as fh:
        for line in list(fh)[:3]:
            print(" ", line.rstrip())
    report = validate_file(logs_file)
    print("\n== 4. otelfin logs validate", logs_file)
    print(f"  {report.lines} lines, {report.bad_lines} bad")
    for violation in report.violations:
        print(" ", violation)


if __name__ == "__main__":
    main()
