"""Method include lists: before/after import, globs, uninstrument, the entry point."""

from __future__ import annotations

import importlib
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otelfin
from otelfin.instrument import (
    MethodIncludeInstrumentor,
    applied,
    instrument_methods,
    parse_entries,
    uninstrument,
)

MODULE_SOURCE = """
class PaymentService:
    rate = 2

    def process_payment(self, amount):
        return amount * self.rate

    @classmethod
    def create(cls):
        return cls()

    @staticmethod
    def validate(amount):
        return amount > 0

    def _private(self):
        return "p"


def score(amount):
    return amount / 10


def helper():
    return "h"
"""


@pytest.fixture
def payments_pkg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A throw-away package ``<name>.service`` / ``<name>.risk`` importable from tmp_path."""
    name = f"pay_{os.getpid()}_{abs(hash(tmp_path)) % 10**8}"
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "service.py").write_text(MODULE_SOURCE)
    (pkg / "risk.py").write_text(MODULE_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    uninstrument()
    for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[mod]


def test_parse_entries() -> None:
    """Entries parse into module and qualname; malformed ones raise naming the entry."""
    (a, b) = parse_entries(["pkg.mod:Cls.meth", " pkg.risk:* "])
    assert (a.module, a.qualname, a.is_glob) == ("pkg.mod", "Cls.meth", False)
    assert (b.module, b.qualname, b.is_glob) == ("pkg.risk", "*", True)
    for bad in ["pkg.mod", ":meth", "pkg.mod:", "pkg.*:f"]:
        with pytest.raises(ValueError, match="bad include entry"):
            parse_entries([bad])


def test_already_imported_module(spans: InMemorySpanExporter, payments_pkg: str) -> None:
    """An entry for an imported module wraps that method in place; results are unchanged."""
    service = importlib.import_module(f"{payments_pkg}.service")
    instrument_methods([f"{payments_pkg}.service:PaymentService.process_payment"])
    assert service.PaymentService().process_payment(21) == 42
    (span,) = spans.get_finished_spans()
    assert span.name == "PaymentService.process_payment"
    assert applied() == [f"{payments_pkg}.service:PaymentService.process_payment"]


def test_module_imported_after_configure(
    spans: InMemorySpanExporter, payments_pkg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """configure() reads OTELFIN_METHODS_INCLUDE; a module imported later is patched on import."""
    monkeypatch.setenv(
        "OTELFIN_METHODS_INCLUDE",
        f"{payments_pkg}.risk:*,{payments_pkg}.service:PaymentService.create",
    )
    otelfin.configure("otelfin-test", span_exporter=spans, span_processor="simple")
    assert f"{payments_pkg}.risk" not in sys.modules
    risk = importlib.import_module(f"{payments_pkg}.risk")
    assert risk.score(50) == 5
    assert risk.PaymentService().process_payment(1) == 2
    assert risk.PaymentService.validate(3) is True
    assert isinstance(risk.PaymentService.create(), risk.PaymentService)
    service = importlib.import_module(f"{payments_pkg}.service")
    service.PaymentService.create()
    names = sorted(s.name for s in spans.get_finished_spans())
    assert names == [
        "PaymentService.create",
        "PaymentService.create",
        "PaymentService.process_payment",
        "PaymentService.validate",
        "score",
    ]
    # The glob covers private methods and helpers too, when they are called.
    assert f"{payments_pkg}.risk:helper" in applied()


def test_glob_patterns(spans: InMemorySpanExporter, payments_pkg: str) -> None:
    """`Class.*` and `?`-style globs select only the matching qualnames."""
    service = importlib.import_module(f"{payments_pkg}.service")
    instrument_methods([f"{payments_pkg}.service:PaymentService.[pv]*"])
    got = sorted(applied())
    assert got == [
        f"{payments_pkg}.service:PaymentService.process_payment",
        f"{payments_pkg}.service:PaymentService.validate",
    ]
    service.helper()
    assert spans.get_finished_spans() == ()


def test_uninstrument_restores_originals(spans: InMemorySpanExporter, payments_pkg: str) -> None:
    """uninstrument() puts the original objects back and disarms pending import hooks."""
    service = importlib.import_module(f"{payments_pkg}.service")
    raw_cm = service.PaymentService.__dict__["create"]
    raw_fn = service.PaymentService.__dict__["process_payment"]
    instrument_methods([f"{payments_pkg}.service:PaymentService.*", f"{payments_pkg}.risk:score"])
    assert service.PaymentService.__dict__["process_payment"] is not raw_fn
    uninstrument()
    assert service.PaymentService.__dict__["create"] is raw_cm
    assert service.PaymentService.__dict__["process_payment"] is raw_fn
    risk = importlib.import_module(f"{payments_pkg}.risk")
    risk.score(1)
    service.PaymentService().process_payment(1)
    assert spans.get_finished_spans() == ()
    assert applied() == []


def test_unresolved_entry_reported_once(
    spans: InMemorySpanExporter, payments_pkg: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An entry matching nothing is logged once and does not stop the rest."""
    importlib.import_module(f"{payments_pkg}.service")
    with caplog.at_level(logging.WARNING, logger="otelfin"):
        for _ in range(2):
            instrument_methods(
                [
                    f"{payments_pkg}.service:PaymentService.nope",
                    f"{payments_pkg}.service:score",
                ]
            )
    warnings = [r.getMessage() for r in caplog.records if "matched nothing" in r.getMessage()]
    assert len(warnings) == 1 and "PaymentService.nope" in warnings[0]
    assert applied() == [f"{payments_pkg}.service:score"]


def test_include_entries_do_not_double_trace(
    spans: InMemorySpanExporter, payments_pkg: str
) -> None:
    """Listing a function twice, or one already decorated, still gives one span a call."""
    service = importlib.import_module(f"{payments_pkg}.service")
    instrument_methods([f"{payments_pkg}.service:score", f"{payments_pkg}.service:sc*"])
    service.score(10)
    assert len(spans.get_finished_spans()) == 1


def test_entry_point_is_registered() -> None:
    """The opentelemetry_instrumentor entry point resolves to the include-list instrumentor."""
    (ep,) = [e for e in entry_points(group="opentelemetry_instrumentor") if e.name == "otelfin"]
    assert ep.load() is MethodIncludeInstrumentor


def test_instrumentor_applies_environment(
    spans: InMemorySpanExporter, payments_pkg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The instrumentor applies OTELFIN_METHODS_INCLUDE; uninstrument() undoes it."""
    monkeypatch.setenv("OTELFIN_METHODS_INCLUDE", f"{payments_pkg}.service:score")
    instrumentor = MethodIncludeInstrumentor()
    instrumentor.instrument()
    try:
        service = importlib.import_module(f"{payments_pkg}.service")
        service.score(1)
        assert [s.name for s in spans.get_finished_spans()] == ["score"]
    finally:
        instrumentor.uninstrument()
    service.score(1)
    assert len(spans.get_finished_spans()) == 1


def test_opentelemetry_instrument_zero_code_change(tmp_path: Path) -> None:
    """`opentelemetry-instrument python app.py` traces listed methods with no code change."""
    app = tmp_path / "app.py"
    (tmp_path / "shop.py").write_text(MODULE_SOURCE)
    app.write_text(
        textwrap.dedent(
            """
            import shop
            print("result", shop.PaymentService().process_payment(4), shop.score(20))
            """
        )
    )
    exe = Path(sys.executable).parent / "opentelemetry-instrument"
    env = {
        **os.environ,
        "OTELFIN_METHODS_INCLUDE": "shop:PaymentService.process_payment,shop:score",
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_SERVICE_NAME": "shop",
        "PYTHONPATH": str(tmp_path),
    }
    result = subprocess.run(
        [str(exe), sys.executable, str(app)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "result 8 2.0" in result.stdout
    assert '"name": "PaymentService.process_payment"' in result.stdout
    assert '"name": "score"' in result.stdout
