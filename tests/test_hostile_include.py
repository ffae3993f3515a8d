"""Method include lists over hostile modules: the host's import never fails because of otelfin."""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otelfin.instrument import applied, instrument_methods, uninstrument

FROZEN_SOURCE = textwrap.dedent(
    """
    class Frozen(type):
        def __setattr__(cls, name, value):
            raise RuntimeError("class is frozen")


    class Ledger(metaclass=Frozen):
        def post(self):
            return "posted"


    def settle():
        return "settled"
    """
)


@pytest.fixture
def frozen_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A throw-away module with a class whose metaclass refuses attribute assignment."""
    name = f"frozen_{os.getpid()}_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(FROZEN_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    uninstrument()
    sys.modules.pop(name, None)


def test_frozen_class_does_not_break_later_import(
    spans: InMemorySpanExporter, frozen_module: str
) -> None:
    """A glob matching a frozen class's method: the later import succeeds, the rest is traced."""
    instrument_methods([f"{frozen_module}:*"])
    module = importlib.import_module(frozen_module)
    assert module.settle() == "settled"
    assert module.Ledger().post() == "posted"
    assert applied() == [f"{frozen_module}:settle"]
    assert [s.name for s in spans.get_finished_spans()] == ["settle"]


def test_frozen_class_does_not_break_already_imported(
    spans: InMemorySpanExporter, frozen_module: str
) -> None:
    """The same for a module imported before the include list is applied."""
    module = importlib.import_module(frozen_module)
    instrument_methods([f"{frozen_module}:Ledger.post", f"{frozen_module}:settle"])
    assert module.Ledger().post() == "posted"
    assert applied() == [f"{frozen_module}:settle"]
