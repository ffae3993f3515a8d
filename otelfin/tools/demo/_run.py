"""Run the demo: services up, workload, artefacts, and the report drawn from them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import queue
import shutil
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = ["DemoError", "DemoOptions", "DemoResult", "run_demo"]

_GATEWAY = "otelfin.tools.demo.payment_gateway"
_ACCEPT = "application/openmetrics-text; version=1.0.0, text/plain; version=0.0.4"
_ARTEFACTS = ("spans.jsonl", "logs.jsonl", "metrics.prom", "report.html")
_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 45.0


class DemoError(Exception):
    """The demo cannot run as asked (bad option, missing extra, a service that did not start)."""


@dataclass(frozen=True)
class DemoOptions:
    """``otelfin demo``'s options."""

    requests: int = 500
    seconds: float = 40.0
    slow_channel: str | None = "wechat"
    amqp: str | None = None
    nats: str | None = None
    otlp: str | None = None
    out_dir: str = "build/demo"
    concurrency: int = 12
    seed: int = 7
    progress: bool = True


@dataclass
class DemoResult:
    """What the demo found, for the CLI's exit status and for tests."""

    out_dir: Path
    elapsed: float
    outcomes: dict[str, int]
    report: Any
    trace: Any
    slowest_channel: str
    log_lines: int
    bad_log_lines: int
    pan_hits: dict[str, int]
    metrics_urls: dict[str, str]
    artefacts: dict[str, Path] = field(default_factory=dict)
    #: ``traces why`` over the payments: the hop that makes the slow ones slow (or None).
    why: Any = None

    @property
    def ok(self) -> bool:
        return (
            self.bad_log_lines == 0
            and not any(self.pan_hits.values())
            and self.trace is not None
            and len(self.trace.services) >= 4
        )


def _check_options(options: DemoOptions) -> None:
    from otelfin.tools.demo.payment_gateway.channels import CHANNELS

    if options.requests < 1:
        raise DemoError(f"--requests must be at least 1, not {options.requests}")
    if not options.seconds > 0:
        raise DemoError(f"--seconds must be positive, not {options.seconds}")
    if options.slow_channel is not None and options.slow_channel not in CHANNELS:
        raise DemoError(
            f"--slow-channel {options.slow_channel!r} is not a channel: {', '.join(CHANNELS)}"
        )
    if options.amqp and options.nats:
        raise DemoError("give --amqp or --nats, not both (the settlement bus is one broker)")
    for flag, url, schemes in (
        ("--amqp", options.amqp, ("amqp://", "amqps://")),
        ("--nats", options.nats, ("nats://", "tls://")),
        ("--otlp", options.otlp, ("http://", "https://")),
    ):
        if url is not None and not url.startswith(schemes):
            raise DemoError(f"{flag} {url!r} must start with {' or '.join(schemes)}")
    missing = []
    for module, package in (("fastapi", "fastapi"), ("uvicorn", "uvicorn"), ("grpc", "grpcio")):
        try:
            __import__(module)
        except ImportError:
            missing.append(package)
    if missing:
        raise DemoError(f"the demo needs {', '.join(missing)}: pip install 'otelfin[demo]'")


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class _Services:
    """The three service processes and the queues/counters they share."""

    def __init__(self, settings: Any) -> None:
        self.ctx = multiprocessing.get_context("spawn")
        self.settings = settings
        self.events: Any = self.ctx.Queue()
        self.stop: Any = self.ctx.Event()
        self.bus: Any = self.ctx.Queue()
        self.published: Any = self.ctx.Value("i", 0)
        self.settled: Any = self.ctx.Value("i", 0)
        self.processes: dict[str, Any] = {}
        self.info: dict[str, dict[str, str]] = {}
        self.stopped: set[str] = set()
        self.terminated: list[str] = []

    def start(self, name: str, target: Any, *args: Any, env: dict[str, str] | None = None) -> None:
        process = self.ctx.Process(target=target, args=args, name=f"otelfin-demo-{name}")
        process.daemon = True
        with _env(**(env or {})):
            process.start()
        self.processes[name] = process

    def wait_ready(self, names: tuple[str, ...], timeout: float = _START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not all(name in self.info for name in names):
            try:
                kind, service, data = self.events.get(timeout=0.2)
            except queue.Empty:
                dead = [n for n in names if n not in self.info and not self.processes[n].is_alive()]
                if dead:
                    raise DemoError(f"{dead[0]} exited before it was ready") from None
                if time.monotonic() > deadline:
                    raise DemoError(f"services not ready after {timeout:.0f}s") from None
                continue
            self._event(kind, service, data)

    def _event(self, kind: str, service: str, data: dict[str, str]) -> None:
        if kind == "ready":
            self.info[service] = data
        elif kind == "stopped":
            self.stopped.add(service)
        elif kind == "failed":
            raise DemoError(f"{service} failed: {data.get('error')}")

    def shutdown(self) -> None:
        self.stop.set()
        deadline = time.monotonic() + _STOP_TIMEOUT
        for name, process in self.processes.items():
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                # Its last spans and log lines may be lost (or a line cut short): say so.
                self.terminated.append(name)
                process.terminate()
                process.join(2)
        with contextlib.suppress(Exception):
            while True:
                self._event(*self.events.get_nowait())


def _scrape(url: str) -> str:
    request = urllib.request.Request(url, headers={"Accept": _ACCEPT})
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(response.read().decode("utf-8"))


class _Progress:
    def __init__(self, stream: IO[str], enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.last = 0.0
        self.next_line = 0.25
        self.printed_final = False

    def __call__(self, progress: Any, final: bool = False) -> None:
        if not self.enabled or self.printed_final:
            return
        now = time.monotonic()
        share = progress.done / progress.total if progress.total else 1.0
        if self.tty:
            if not final and now - self.last < 0.1:
                return
        elif not final and share < self.next_line:
            return
        else:
            self.next_line = share + 0.25
        self.last = now
        self.printed_final = final or (not self.tty and progress.done >= progress.total)
        filled = int(share * 30)
        outcomes = "  ".join(f"{k} {v}" for k, v in sorted(progress.outcomes.items()))
        line = (
            f"[{'#' * filled}{'.' * (30 - filled)}] {progress.done}/{progress.total} payments "
            f"{now - progress.started:5.1f}s  {outcomes}"
        )
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _merge_spans(parts: Path, target: Path) -> None:
    with target.open("wb") as out:
        for path in sorted(parts.glob("spans-*.jsonl")):
            with path.open("rb") as src:
                shutil.copyfileobj(src, out)


def _merge_logs(parts: Path, target: Path) -> None:
    lines: list[tuple[str, int, bytes]] = []
    for path in sorted(parts.glob("logs-*.jsonl")):
        for n, line in enumerate(path.read_bytes().splitlines()):
            try:
                stamp = str(json.loads(line).get("timestamp", ""))
            except (ValueError, AttributeError):
                stamp = ""  # kept as is: validation reports it
            lines.append((stamp, n, line))
    lines.sort(key=lambda item: (item[0], item[1]))
    target.write_bytes(b"".join(line + b"\n" for _, _, line in lines))


_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id"})


def _texts(value: Any, key: str = "") -> Iterator[str]:
    """Every string and number in a parsed JSON value, except trace/span ids and OTLP's
    nanosecond timestamps: digit runs (a span id can be 16 decimal digits, a timestamp 19)
    that pass Luhn by chance and are no card number."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _texts(v, str(k))
    elif isinstance(value, list):
        for v in value:
            yield from _texts(v, key)
    elif not key.endswith("UnixNano") and key not in _ID_KEYS:
        yield str(value)


def _pan_hits(paths: list[Path], cards: list[str], ids: set[str]) -> dict[str, int]:
    """Unmasked card numbers per file: otelfin's detector over every value, plus a literal
    search for the workload's own test cards (with and without their spaces/dashes).

    In the text files (exposition, HTML) a hit that is exactly a trace or span id of the run
    is not counted: exemplars and the waterfall carry ids.
    """
    from otelfin.logging import find_pans

    literals = {c for card in cards for c in (card, card.replace(" ", "").replace("-", ""))}
    hits = {}
    for path in paths:
        if path.suffix in (".sqlite3", ".db") or not path.is_file():
            continue
        data = path.read_text(encoding="utf-8", errors="replace")
        found = sum(data.count(literal) for literal in literals)
        if path.suffix == ".jsonl":
            for line in data.splitlines():
                try:
                    parsed = json.loads(line)
                except ValueError:
                    found += len(find_pans(line))
                    continue
                found += sum(len(find_pans(text)) for text in _texts(parsed))
        else:
            found += sum(1 for a, b in find_pans(data) if data[a:b] not in ids)
        hits[str(path)] = found
    return hits


def _pick_trace(traces: dict[str, Any], report: Any, channel: str) -> Any:
    """A slow-tail exemplar of ``channel`` crossing every service, else the best we have."""
    exemplar_ids = [
        trace_id
        for row in report.rows
        if row.label == "channel" and row.value == channel
        for trace_id in row.exemplars
    ]
    for trace_id in exemplar_ids:
        trace = traces.get(trace_id)
        if trace is not None and len(trace.services) >= 4:
            return trace

    from otelfin.tools.demo._html import channel_of

    complete = [t for t in traces.values() if len(t.services) >= 4]
    in_channel = [t for t in complete if channel_of(t) == channel]
    pool = in_channel or complete or list(traces.values())
    if not pool:
        return None
    return max(pool, key=lambda t: (len(t.services), t.duration_ns))


def run_demo(
    options: DemoOptions, out: IO[str] | None = None, err: IO[str] | None = None
) -> DemoResult:
    """Run the whole demo; prints as it goes and returns what it found."""
    out = out or sys.stdout
    err = err or sys.stderr
    _check_options(options)
    started = time.monotonic()
    timings: dict[str, float] = {}
    from otelfin.tools.demo.payment_gateway import services as svc

    out_dir = Path(options.out_dir).resolve()
    parts = out_dir / "parts"
    for name in _ARTEFACTS:
        (out_dir / name).unlink(missing_ok=True)
    shutil.rmtree(parts, ignore_errors=True)
    parts.mkdir(parents=True, exist_ok=True)

    bus_kind = "amqp" if options.amqp else "nats" if options.nats else "memory"
    run_id = uuid.uuid4().hex[:8]
    settings = svc.Settings(
        out_dir=str(out_dir),
        slow_channel=options.slow_channel,
        bus=bus_kind,
        bus_url=options.amqp or options.nats,
        bus_name=f"otelfin-demo-settlements-{run_id}",
        otlp=options.otlp,
        seed=options.seed,
    )
    bus_text = {"memory": "in-memory queue", "amqp": f"RabbitMQ {options.amqp}"}.get(
        bus_kind, f"NATS {options.nats}"
    )
    print(f"otelfin demo: payment gateway on 127.0.0.1 (bus: {bus_text}), out: {out_dir}", file=out)
    services = _Services(settings)
    try:
        services.start(
            "ledger",
            svc.run_ledger,
            settings,
            services.events,
            services.stop,
            services.bus,
            services.published,
        )
        services.start(
            "settlement-worker",
            svc.run_worker,
            settings,
            services.events,
            services.stop,
            services.bus,
            services.settled,
        )
        ledger_targets = services.ctx.Queue()
        services.start(
            "payment-api",
            svc.run_api,
            settings,
            services.events,
            services.stop,
            ledger_targets,
            # The zero-code path: the risk module has no decorator; the operator lists it.
            env={"OTELFIN_METHODS_INCLUDE": f"{_GATEWAY}.risk:*"},
        )
        checkout_metrics = svc.configure_service("checkout", settings)
        services.wait_ready(("ledger",))
        ledger_targets.put(services.info["ledger"]["target"])
        services.wait_ready(("ledger", "settlement-worker", "payment-api"))
        urls = {
            name: services.info[name]["metrics"]
            for name in ("payment-api", "ledger", "settlement-worker")
        }
        urls["checkout"] = checkout_metrics
        print(f"  payment API   {services.info['payment-api']['url']}/v1/payments", file=out)
        print(f"  ledger gRPC   {services.info['ledger']['target']}", file=out)
        for name, url in urls.items():
            print(f"  /metrics      {url}   ({name})", file=out)
        print(
            f"driving {options.requests} payments ({options.concurrency} at a time, at most "
            f"{options.seconds:g}s); slow path injected in one channel",
            file=out,
        )
        out.flush()
        from otelfin.tools.demo.payment_gateway.checkout import drive

        timings["start"] = time.monotonic() - started
        show = _Progress(err, options.progress)
        progress = asyncio.run(
            drive(
                services.info["payment-api"]["url"],
                requests=options.requests,
                seconds=options.seconds,
                concurrency=options.concurrency,
                seed=options.seed,
                on_progress=show,
            )
        )
        show(progress, final=True)
        timings["workload"] = time.monotonic() - started
        deadline = time.monotonic() + 15
        while services.settled.value < services.published.value and time.monotonic() < deadline:
            time.sleep(0.05)
        expositions = {name: _scrape(url) for name, url in urls.items()}
    finally:
        services.shutdown()
        import otelfin

        otelfin.shutdown()
        for name in services.terminated:
            print(
                f"warning: {name} did not stop within {_STOP_TIMEOUT:g}s and was terminated; "
                "its last spans and log lines may be missing",
                file=err,
            )
    for name, text in expositions.items():
        (parts / f"metrics-{name}.prom").write_text(text, encoding="utf-8")
    (out_dir / "metrics.prom").write_text(expositions["payment-api"], encoding="utf-8")
    _merge_spans(parts, out_dir / "spans.jsonl")
    _merge_logs(parts, out_dir / "logs.jsonl")
    timings["stopped"] = time.monotonic() - started
    if os.environ.get("OTELFIN_DEMO_TIMINGS"):
        print(f"timings: {timings}", file=err)
    return _analyse(options, out_dir, progress, urls, started, out)


def _analyse(
    options: DemoOptions,
    out_dir: Path,
    progress: Any,
    urls: dict[str, str],
    started: float,
    out: IO[str],
) -> DemoResult:
    from otelfin.logging import validate_file
    from otelfin.metrics.names import DURATION as DURATION_METRIC
    from otelfin.tools import metrics as _report
    from otelfin.tools import traces as _traces
    from otelfin.tools.demo import _html
    from otelfin.tools.demo.payment_gateway.services import SLO_SECONDS

    text = (out_dir / "metrics.prom").read_text(encoding="utf-8")
    series = _report.series_from_text(text, DURATION_METRIC)
    report = _report.attribute(
        series,
        ["channel", "operation", "outcome"],
        metric=DURATION_METRIC,
        source=str(out_dir / "metrics.prom"),
    )
    channel_rows = [r for r in report.rows if r.label == "channel" and r.value]
    slowest = channel_rows[0].value if channel_rows else ""
    traces = _traces.group_traces(_traces.read_spans(str(out_dir / "spans.jsonl")))
    trace = _pick_trace(traces, report, slowest)
    why = _why(traces)
    logs = validate_file(str(out_dir / "logs.jsonl"))

    print("", file=out)
    if trace is not None:
        print(
            f"One payment of the slow tail (channel {_html.channel_of(trace) or '?'}), "
            f"across {len(trace.services)} services:",
            file=out,
        )
        print(_traces.render_waterfall(trace), file=out)
        print("", file=out)
    print(
        "P99 attribution over the payment API's requests, one per payment (metrics.prom):",
        file=out,
    )
    print(_report.format_text(_channel_only(report), promql=False), file=out)
    if channel_rows:
        top = channel_rows[0]
        print(
            f"=> the slow tail is channel {top.value!r}: {top.tail_share:.0%} of slow requests "
            f"from {top.traffic_share:.0%} of traffic ({top.lift:.1f}x)",
            file=out,
        )
    print(_codes_line(text), file=out)
    print("", file=out)
    if why is not None:
        print("Why the slow payments are slow (critical path, spans.jsonl):", file=out)
        print(_traces.render_why(why, limit=6), file=out)
        print("", file=out)
    print(
        f"logs: {logs.lines} lines in logs.jsonl, {logs.bad_lines} bad "
        f"(otelfin logs validate {out_dir / 'logs.jsonl'})",
        file=out,
    )
    for violation in logs.violations[:5]:
        print(f"  {violation}", file=out)
    html_path = out_dir / "report.html"
    html_path.write_text(
        _html.render(
            report=report,
            trace=trace,
            series=series,
            slo=SLO_SECONDS,
            exposition=text,
            outcomes=dict(progress.outcomes),
            title="otelfin demo: payment gateway",
            traces=traces,
            why=why,
        ),
        encoding="utf-8",
    )
    artefacts = {name: out_dir / name for name in _ARTEFACTS}
    scanned = list(artefacts.values()) + sorted((out_dir / "parts").glob("*"))
    from otelfin.tools.demo.payment_gateway.checkout import TEST_CARDS

    ids = {i for t in traces.values() for s in t.spans for i in (s.trace_id, s.span_id)}
    hits = _pan_hits(scanned, [card for cards in TEST_CARDS.values() for card in cards], ids)
    print(
        f"card numbers: {sum(hits.values())} unmasked in {len(hits)} files "
        "(spans, logs, metrics, report)",
        file=out,
    )
    elapsed = time.monotonic() - started
    print(f"artefacts in {out_dir}: {', '.join(_ARTEFACTS)}  ({elapsed:.1f}s)", file=out)
    print(f"  otelfin p99 report --file {out_dir / 'metrics.prom'} --by channel", file=out)
    print(f"  otelfin traces show {out_dir / 'spans.jsonl'} --slowest", file=out)
    print(f"  otelfin traces why {out_dir / 'spans.jsonl'} --by service", file=out)
    return DemoResult(
        out_dir=out_dir,
        elapsed=elapsed,
        outcomes=dict(progress.outcomes),
        report=report,
        trace=trace,
        slowest_channel=slowest,
        log_lines=logs.lines,
        bad_log_lines=logs.bad_lines,
        pan_hits=hits,
        metrics_urls=urls,
        artefacts=artefacts,
        why=why,
    )


def _why(traces: dict[str, Any]) -> Any:
    """``traces why`` over the payments (the checkout's ``checkout.pay`` spans), or None."""
    from otelfin.tools import traces as _traces

    try:
        return _traces.why_slow(traces.values(), operation="checkout.pay")
    except _traces.TraceFileError:
        return None


def _channel_only(report: Any) -> Any:
    import dataclasses

    return dataclasses.replace(report, rows=tuple(r for r in report.rows if r.label == "channel"))


def _codes_line(exposition: str) -> str:
    """``declined: PAY-006 12, ...; errors: PAY-011 4`` from the payment API's counters."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
    from prometheus_client.parser import text_string_to_metric_families as parse_text

    from otelfin.metrics.names import DECLINES, ERRORS

    try:
        parse = parse_om if exposition.rstrip().endswith("# EOF") else parse_text
        families = list(parse(exposition))
    except ValueError:
        return "requests by code: the exposition could not be read"
    parts = []
    for name, what in ((DECLINES, "declined"), (ERRORS, "errors")):
        counts: dict[str, float] = {}
        for family in families:
            if family.name != name.removesuffix("_total"):
                continue
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    code = sample.labels.get("error_code", "")
                    counts[code] = counts.get(code, 0.0) + sample.value
        shown = ", ".join(f"{c} {n:,.0f}" for c, n in sorted(counts.items(), key=lambda i: -i[1]))
        parts.append(f"{what} {sum(counts.values()):,.0f} requests ({shown or 'none'})")
    return "by code: " + "; ".join(parts)
