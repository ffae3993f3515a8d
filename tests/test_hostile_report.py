"""Hostile input to `otelfin p99 report`: malformed Prometheus replies from a real local HTTP
server, non-http URLs, huge expositions (linear time), and JSON output without NaN/Infinity."""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from otelfin.cli import main
from otelfin.tools.metrics import HistogramSeries, attribute, series_from_text

_METRIC = "otelfin_request_duration_seconds"
_GOOD_P99 = {"status": "success", "data": {"resultType": "vector", "result": []}}

# A reply: (status, content type, body) or a callable writing to the handler itself.
Reply = tuple[int, str, bytes] | Callable[[BaseHTTPRequestHandler], None]


class _Server:
    """A real HTTP server on 127.0.0.1 (free port) answering every GET with ``reply``."""

    def __init__(self) -> None:
        self.reply: Reply = (200, "application/json", b"{}")
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                reply = server.reply
                try:
                    if callable(reply):
                        reply(self)
                        return
                    status, ctype, body = reply
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests): expected

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    yield srv
    srv.close()


def _json(value: object) -> tuple[int, str, bytes]:
    return (200, "application/json", json.dumps(value).encode())


def _vector(*values: str, labels: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    rows = [{"metric": labels or {}, "value": [1700000000.0, v]} for v in values]
    return _json({"status": "success", "data": {"resultType": "vector", "result": rows}})


def _slow(seconds: float) -> Callable[[BaseHTTPRequestHandler], None]:
    def reply(handler: BaseHTTPRequestHandler) -> None:
        time.sleep(seconds)
        handler.send_response(200)
        handler.end_headers()

    return reply


def _trickle(handler: BaseHTTPRequestHandler) -> None:
    """Headers at once, then one byte every 0.2 s of a body that never completes."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", "100000")
    handler.end_headers()
    for _ in range(100):
        handler.wfile.write(b" ")
        handler.wfile.flush()
        time.sleep(0.2)


_MALFORMED: list[tuple[str, Reply, str]] = [
    ("not-json", (200, "text/plain", b"hello"), "not JSON"),
    ("empty-body", (200, "application/json", b""), "not JSON"),
    ("json-list", _json([]), "not an object"),
    ("json-string", _json("success"), "not an object"),
    ("no-data", _json({"status": "success"}), "without 'data'"),
    ("data-list", _json({"status": "success", "data": []}), "expected an instant vector"),
    (
        "matrix",
        _json({"status": "success", "data": {"resultType": "matrix", "result": []}}),
        "expected an instant vector",
    ),
    (
        "result-string",
        _json({"status": "success", "data": {"resultType": "vector", "result": "x"}}),
        "without a result list",
    ),
    (
        "row-no-value",
        _json({"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}}]}}),
        "malformed sample",
    ),
    (
        "row-not-object",
        _json({"status": "success", "data": {"resultType": "vector", "result": [7]}}),
        "malformed sample",
    ),
    (
        "value-number",
        _json(
            {
                "status": "success",
                "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, 2]}]},
            }
        ),
        "malformed sample",
    ),
    (
        "label-not-string",
        _json(
            {
                "status": "success",
                "data": {
                    "resultType": "vector",
                    "result": [{"metric": {"le": 1}, "value": [1, "2"]}],
                },
            }
        ),
        "malformed sample",
    ),
    ("value-text", _vector("abc"), "the value 'abc', not a number"),
    ("nan-p99", _vector("NaN"), "no otelfin_request_duration_seconds requests"),
    ("inf-p99", _vector("+Inf"), "not a latency"),
    ("huge-p99", _vector("1e999"), "not a latency"),
    ("negative-p99", _vector("-1"), "not a latency"),
    ("bare-nan-constant", (200, "application/json", b'{"status": NaN}'), "not JSON"),
    ("deep-json", (200, "application/json", b"[" * 200_000), "not JSON"),
    ("html-200", (200, "text/html", b"<html><body>Login required</body></html>"), "an HTML page"),
    ("html-500", (500, "text/html", b"<html><h1>Internal Server Error</h1></html>"), "HTTP 500"),
    ("json-500", (500, "application/json", b'{"status":"error","error":"boom"}'), "boom"),
    (
        "error-status",
        _json({"status": "error", "error": "parse error at char 3"}),
        "parse error at char 3",
    ),
    ("error-not-string", _json({"status": "error", "error": ["x"]}), "Prometheus refused"),
    ("bad-utf8", (200, "application/json", b"\xff\xfe{}"), "not JSON"),
]


@pytest.mark.parametrize(("name", "reply", "message"), _MALFORMED, ids=[m[0] for m in _MALFORMED])
def test_prometheus_malformed_reply_exits_2(
    server: _Server, capsys: pytest.CaptureFixture[str], name: str, reply: Reply, message: str
) -> None:
    """Each malformed Prometheus reply is exit 2 with a clear message, never a traceback."""
    server.reply = reply
    argv = ["p99", "report", "--prometheus", server.url, "--by", "channel", "--timeout", "5"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("otelfin: error: "), err
    assert message in err, err
    assert "Traceback" not in err
    assert len(err) < 600


def test_malformed_counts_after_a_good_p99_exit_2(
    server: _Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """A good P99 and buckets, then counts that overflow a float: exit 2, not Infinity."""
    answers = iter(
        [
            _vector("0.2"),
            _vector("10", labels={"le": "0.25"}),
            _json({"status": "success", "data": []}),  # exemplars
            _json(
                {
                    "status": "success",
                    "data": {
                        "resultType": "vector",
                        "result": [
                            {"metric": {"channel": c}, "value": [1.0, "1e308"]}
                            for c in ("web", "pos")
                        ],
                    },
                }
            ),
            _vector("1", labels={"channel": "web"}),
        ]
    )

    def reply(handler: BaseHTTPRequestHandler) -> None:
        status, _ctype, body = next(answers)
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    server.reply = reply
    assert main(["p99", "report", "--prometheus", server.url, "--by", "channel"]) == 2
    err = capsys.readouterr().err
    assert "add up to more than a float holds" in err and "Traceback" not in err


@pytest.mark.parametrize("kind", ["silent", "trickle"])
def test_slow_prometheus_beyond_timeout_exits_2(
    server: _Server, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    """A server slower than --timeout (silent, or trickling bytes) is exit 2 within ~2x it."""
    server.reply = _slow(10) if kind == "silent" else _trickle
    start = time.monotonic()
    argv = ["p99", "report", "--prometheus", server.url, "--by", "channel", "--timeout", "1"]
    assert main(argv) == 2
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err
    assert "within 1s (--timeout)" in err, err
    assert elapsed < 4, elapsed


def test_slow_scrape_beyond_timeout_exits_2(
    server: _Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """--scrape of a /metrics that trickles forever stops at about --timeout, exit 2."""
    server.reply = _trickle
    start = time.monotonic()
    argv = ["p99", "report", "--scrape", server.url + "/metrics", "--by", "c", "--timeout", "1"]
    assert main(argv) == 2
    assert time.monotonic() - start < 4
    assert "cannot scrape" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--scrape", "--prometheus"])
@pytest.mark.parametrize(
    "url",
    ["file://{path}", "FILE://{path}", "ftp://127.0.0.1/x", "data:,hello", "{path}", "http://"],
)
def test_only_http_urls_and_no_local_file_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, url: str
) -> None:
    """--scrape/--prometheus take only http(s) URLs: anything else is exit 2, nothing read."""
    secret = tmp_path / "secret.prom"
    secret.write_text("TOPSECRET_TOKEN=abc123\n# EOF\n")
    target = url.format(path=secret)
    assert main(["p99", "report", option, target, "--by", "channel"]) == 2
    err = capsys.readouterr().err
    assert f"{option} takes an http:// or https:// URL" in err, err
    assert "TOPSECRET" not in err


def test_redirect_to_another_scheme_is_refused(
    server: _Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """An http server redirecting to ftp:// (which urllib would follow) is refused, exit 2."""

    def reply(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", "ftp://127.0.0.1/metrics")
        handler.end_headers()

    server.reply = reply
    assert main(["p99", "report", "--scrape", server.url, "--by", "channel"]) == 2
    assert "refused a redirect" in capsys.readouterr().err


def test_scrape_http_500_exits_2(server: _Server, capsys: pytest.CaptureFixture[str]) -> None:
    """A /metrics answering 500 is exit 2 naming the status."""
    server.reply = (500, "text/plain", b"oops")
    assert main(["p99", "report", "--scrape", server.url, "--by", "channel"]) == 2
    assert "HTTP 500" in capsys.readouterr().err


# --- exposition files ----------------------------------------------------------------------


def _exposition(series: int, own_bounds: bool, seed: int = 0) -> str:
    rng = random.Random(seed)
    base = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0]
    out = [f"# TYPE {_METRIC} histogram"]
    for i in range(series):
        labels = f'operation="op{i}",channel="ch{i % 7}"'
        bounds = [round(b * (1 + i * 1e-4), 7) for b in base] if own_bounds else base
        count = 0
        for bound in bounds:
            count += rng.randint(0, 50)
            out.append(f'{_METRIC}_bucket{{{labels},le="{bound}"}} {count}')
        out.append(f'{_METRIC}_bucket{{{labels},le="+Inf"}} {count + 3}')
        out.append(f"{_METRIC}_count{{{labels}}} {count + 3}")
        out.append(f"{_METRIC}_sum{{{labels}}} {count * 0.1}")
    return "\n".join(out) + "\n"


def _attribute_cpu(series: list[HistogramSeries]) -> float:
    best = math.inf
    for _ in range(3):
        start = time.process_time()
        attribute(series, ["channel", "operation"], metric=_METRIC)
        best = min(best, time.process_time() - start)
    return best


def test_attribution_is_linear_in_the_exposition() -> None:
    """Twice the series (each with bounds of its own) costs about twice, not 4-8x, the time.

    Before: every series was looked up at every distinct bound (quadratic; a 2.6 MB
    exposition took minutes).
    """
    small = series_from_text(_exposition(300, own_bounds=True), _METRIC)
    large = series_from_text(_exposition(1200, own_bounds=True), _METRIC)
    t_small = _attribute_cpu(small)
    t_large = _attribute_cpu(large)
    assert t_large < 0.5, t_large  # was ~60 s of CPU
    assert t_large / max(t_small, 1e-3) < 8, (t_small, t_large)  # 4x the input; quadratic: 16x


def _reference(series: list[HistogramSeries], quantile: float) -> tuple[float, float, float]:
    """The direct (quadratic) computation: P99, threshold, slow total."""
    from otelfin.metrics._buckets import histogram_quantile

    def cum_at(s: HistogramSeries, bound: float) -> float:
        below = [b for b in s.buckets if b <= bound]
        return s.buckets[max(below)][1] if below else 0.0

    bounds = sorted({b for s in series for b in s.buckets})
    total = sum(s.count for s in series)
    cumulative = [sum(cum_at(s, b) for s in series) for b in bounds] + [total]
    p99 = histogram_quantile(quantile, bounds, cumulative)
    threshold = next((b for b in bounds if b >= p99), bounds[-1])

    def slow(t: float) -> float:
        return sum(max(0.0, s.count - cum_at(s, t)) for s in series)

    # step down while the tail is empty or holds under half of what the quantile leaves
    while bounds.index(threshold) > 0 and (
        slow(threshold) == 0 or slow(threshold) < 0.5 * (1 - quantile) * total
    ):
        threshold = bounds[bounds.index(threshold) - 1]
    return p99, threshold, slow(threshold)


@pytest.mark.parametrize("seed", range(12))
def test_linear_attribution_matches_the_direct_computation(seed: int) -> None:
    """The step-sum computation gives the direct computation's P99, threshold and slow count."""
    rng = random.Random(seed)
    series = []
    for i in range(rng.randint(1, 30)):
        bounds = sorted(
            rng.sample([0.01, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0], rng.randint(1, 6))
        )
        count = 0.0
        buckets = {}
        for bound in bounds:
            count += rng.choice([0, 0, 1, 5, 20])
            buckets[bound] = (str(bound), count)
        series.append(
            HistogramSeries(
                labels={"channel": f"c{i % 3}"},
                buckets=buckets,
                count=count + rng.choice([0, 0, 1, 3]),
            )
        )
    if sum(s.count for s in series) == 0:
        series[0].count = 1.0
    report = attribute(series, ["channel"], metric=_METRIC, quantile=0.9)
    p99, threshold, slow = _reference(series, 0.9)
    assert report.p99_seconds == pytest.approx(p99)
    assert report.threshold_seconds == threshold
    assert report.slow == pytest.approx(slow)


@pytest.mark.parametrize(
    "sample", ['le="+Inf"} +Inf', 'le="0.1"} -5', 'le="0.1"} NaN', 'le="0.2"} +Inf']
)
def test_file_with_non_finite_counts_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sample: str
) -> None:
    """An exposition with NaN, infinite or negative counts is exit 2, never NaN in JSON."""
    text = (
        f"# TYPE {_METRIC} histogram\n"
        f'{_METRIC}_bucket{{channel="web",le="0.1"}} 3\n'
        f'{_METRIC}_bucket{{channel="web",{sample}\n'
        f'{_METRIC}_count{{channel="web"}} 5\n'
    )
    path = tmp_path / "m.prom"
    path.write_text(text)
    status = main(["p99", "report", "--file", str(path), "--by", "channel", "--format", "json"])
    captured = capsys.readouterr()
    assert status == 2, captured
    assert "not a finite number >= 0" in captured.err
    assert "NaN" not in captured.out and "Infinity" not in captured.out


def _strict_json(text: str) -> object:
    def refuse(name: str) -> object:
        raise AssertionError(f"{name} in JSON output")

    return json.loads(text, parse_constant=refuse)


def test_buckets_suggest_json_never_writes_nan_or_infinity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Identical samples (no sampling noise: an infinite ratio) still give RFC 8259 JSON."""
    samples = tmp_path / "lat.txt"
    samples.write_text("0.1\n" * 500)
    assert main(["buckets", "suggest", "--samples", str(samples), "--format", "json"]) == 0
    data = _strict_json(capsys.readouterr().out)
    assert isinstance(data, dict) and data["window"]["ratio"] is None


def test_json_output_helper_maps_non_finite_to_null() -> None:
    """The one JSON writer of the CLI turns NaN/Infinity anywhere into null."""
    from otelfin.cli._output import json_text

    text = json_text({"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": (math.nan,)})
    assert _strict_json(text) == {"a": None, "b": [None, None, 1.5], "c": [None]}
