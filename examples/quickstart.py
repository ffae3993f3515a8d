"""A runnable tour of otelfin's tracing pillar (until ``otelfin demo`` lands).

Run: ``make demo`` (or ``python examples/quickstart.py``). It traces a few payments, one of
them declined with a registered business error, writes the spans as OTLP/JSON lines to
``build/quickstart-spans.jsonl`` and prints a small waterfall of each trace.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict

import otelfin


@otelfin.traced(name="risk.score", attributes={"payment.channel": "channel"})
def score(amount: float, channel: str) -> float:
    return 0.9 if channel == "ecom" and amount > 500 else 0.1


@otelfin.traced(name="ledger.post")
def post_to_ledger(amount: float) -> str:
    return f"posting-{int(amount * 100)}"


@otelfin.traced(name="payment.process", kind="server", attributes={"payment.channel": "channel"})
def process_payment(amount: float, balance: float, channel: str = "pos") -> str:
    if score(amount, channel) > 0.5:
        raise otelfin.OtelfinError("RISK-001", "Transaction blocked by fraud rules")
    if amount > balance:
        raise otelfin.OtelfinError("PAY-012", "Insufficient balance", amount=amount)
    return post_to_ledger(amount)


def main() -> None:
    out_dir = os.environ.get("QUICKSTART_DIR") or os.path.join("build")
    os.makedirs(out_dir, exist_ok=True)
    spans_file = os.path.join(out_dir, "quickstart-spans.jsonl")
    if os.path.exists(spans_file):
        os.remove(spans_file)
    otelfin.configure("quickstart-gateway", spans_file=spans_file, span_processor="simple")
    for amount, balance, channel in [
        (25.0, 100.0, "pos"),
        (80.0, 50.0, "pos"),
        (900, 5000, "ecom"),
    ]:
        try:
            print("ok     ", process_payment(amount, balance, channel=channel))
        except otelfin.OtelfinError as exc:
            print("decline", exc.code, exc.message)
    otelfin.shutdown()

    traces: dict[str, list[dict]] = defaultdict(list)
    with open(spans_file, encoding="utf-8") as fh:
        for line in fh:
            for rs in json.loads(line)["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    for span in ss["spans"]:
                        traces[span["traceId"]].append(span)
    print(f"\n{sum(map(len, traces.values()))} spans in {len(traces)} traces -> {spans_file}")
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
            print(f"  {'  ' * depth}{span['name']:<18} +{start_us:7.1f}us {dur_us:7.1f}us {code}")


if __name__ == "__main__":
    main()
