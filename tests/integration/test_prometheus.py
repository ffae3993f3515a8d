"""Real Prometheus: scrape an instrumented app, attribute its P99, evaluate every rule."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

import otelfin
from otelfin.cli import main
from otelfin.metrics import metrics_server
from otelfin.testing import configured_for_test
from otelfin.tools.metrics import all_expressions, build_rules
from tests.integration._procs import free_port
from tests.integration.conftest import require_binary


def _api(base: str, path: str, **params: str) -> Any:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, AssertionError, KeyError, IndexError, ValueError):
            if predicate():
                return
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}")


@contextlib.contextmanager
def _prometheus(tmp: Path, target: str | list[str], rules: Path) -> Iterator[str]:
    binary = require_binary("prometheus")
    targets = [target] if isinstance(target, str) else target
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [{"job_name": "app", "static_configs": [{"targets": targets}]}],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (tmp / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--enable-feature=exemplar-storage",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _api(base, "/api/v1/query", query="up")["result"], 20, "Prometheus")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


@otelfin.traced(name="authorise", attributes={"payment.channel": "channel"})
def authorise(channel: str, delay: float) -> str:
    time.sleep(delay)
    return channel


def _traffic(stop: threading.Event) -> list[threading.Thread]:
    def fast() -> None:
        i = 0
        while not stop.is_set():
            # ~200 calls/s against the slow path's ~3: the slow channel is over 1% of the
            # traffic, so the P99 is its doing (at 0.001 s the P99 sat in the fast calls' own
            # scheduling jitter, which the default layout's 1 ms..30 s bounds resolve).
            authorise(("web", "pos", "app")[i % 3], 0.005)
            i += 1

    def slow() -> None:
        while not stop.is_set():
            authorise("wallet", 0.3)  # the injected slow path

    threads = [
        threading.Thread(target=fast, daemon=True),
        threading.Thread(target=slow, daemon=True),
    ]
    for thread in threads:
        thread.start()
    return threads


def test_prometheus_scrapes_attributes_and_evaluates_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """p99 report --prometheus names the slow channel; every generated rule passes and evaluates."""
    promtool = require_binary("promtool")
    rules = build_rules(slo=0.25)
    rules_file = tmp_path / "rules.yml"
    assert main(["rules", "build", "--slo", "0.25", "-o", str(rules_file)]) == 0
    check = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True,
                           text=True, timeout=30)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr

    registry = CollectorRegistry()
    stop = threading.Event()
    with configured_for_test(metrics_registry=registry, metrics_port=0, metrics_addr="127.0.0.1"):
        server = metrics_server()
        assert server is not None
        threads = _traffic(stop)
        try:
            # The exposition itself is clean for promtool.
            with urllib.request.urlopen(server.url, timeout=5) as response:
                exposition = response.read()
            lint = subprocess.run([promtool, "check", "metrics"], input=exposition,
                                  capture_output=True, timeout=30)  # fmt: skip
            assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout + lint.stderr

            with _prometheus(tmp_path, f"127.0.0.1:{server.port}", rules_file) as base:
                query = (
                    'sum(increase(otelfin_request_duration_seconds_count{channel="wallet"}[1m]))'
                )
                _wait(
                    lambda: (
                        float(_api(base, "/api/v1/query", query=query)["result"][0]["value"][1])
                        >= 3
                    ),
                    30,
                    "slow requests in Prometheus",
                )
                code = main(["p99", "report", "--prometheus", base, "--by", "channel,operation",
                             "--window", "1m", "--format", "json"])  # fmt: skip
                out = capsys.readouterr().out
                assert code == 0, out
                # Other log lines may share stdout: the report is the indented document.
                report = json.loads(out[out.index("{\n") :])
                top = report["rows"][0]
                assert (top["label"], top["value"]) == ("channel", "wallet")
                assert top["tail_share"] > 0.9 and top["lift"] > 10
                assert top["exemplars"] and len(top["exemplars"][0]) == 32
                # The threshold is the bound over the P99, or the one under it when the P99 is
                # inside the slow cluster (nothing above): then the report says so.
                assert report["threshold_seconds"] >= report["p99_seconds"] or (
                    report["notes"] and "slowest occupied bucket" in report["notes"][0]
                )

                for name, expr in all_expressions(rules):
                    data = _api(base, "/api/v1/query", query=expr)
                    assert data["resultType"] == "vector", name
                p99 = _api(base, "/api/v1/query", query=all_expressions(rules)[0][1])
                assert p99["result"], "the P99 recording expression has data"

                def all_rules_healthy() -> bool:
                    groups = _api(base, "/api/v1/rules")["groups"]
                    found = [r for g in groups for r in g["rules"]]
                    assert len(found) == len(all_expressions(rules))
                    return all(r["health"] == "ok" and r["lastEvaluation"] > "0001" for r in found)

                _wait(all_rules_healthy, 15, "every rule evaluated with health ok")
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=5)
