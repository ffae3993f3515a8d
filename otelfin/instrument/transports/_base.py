"""Shared plumbing for transport modules: switch an official instrumentor on and off once."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from otelfin import _internal

__all__ = ["OfficialInstrumentor", "available"]


def available(*modules: str) -> bool:
    """True when every module can be imported (checked without importing it)."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in modules)
    except (ImportError, ValueError):
        return False


class OfficialInstrumentor:
    """An official ``opentelemetry-instrumentation-*`` instrumentor, switched on by otelfin.

    It remembers whether otelfin switched it on, so ``uninstall`` never undoes an
    instrumentation the application (or ``opentelemetry-instrument``) set up itself.
    """

    def __init__(self, module: str, cls: str, library: str, extra: str) -> None:
        self.module, self.cls, self.library, self.extra = module, cls, library, extra
        self._ours: Any = None

    def load(self) -> Any:
        """The instrumentor singleton; ImportError names the extra to install."""
        try:
            return getattr(importlib.import_module(self.module), self.cls)()
        except ImportError as exc:
            raise ImportError(
                f"otelfin needs {self.module} for {self.library}: "
                f"pip install 'otelfin[{self.extra}]'"
            ) from exc

    def install(self, **kwargs: Any) -> bool:
        """Instrument unless already instrumented; True when otelfin did it now or before."""
        if self._ours is not None:
            return True
        if not available(self.library, self.module):
            return False
        try:
            instrumentor = self.load()
            if instrumentor.is_instrumented_by_opentelemetry:
                return False
            instrumentor.instrument(**kwargs)
        except Exception as exc:
            _internal.report(f"transports.install[{self.library}]", exc)
            return False
        self._ours = instrumentor
        return True

    def uninstall(self) -> None:
        """Undo ``install`` (only if otelfin instrumented)."""
        instrumentor, self._ours = self._ours, None
        if instrumentor is None:
            return
        try:
            instrumentor.uninstrument()
        except Exception as exc:
            _internal.report(f"transports.uninstall[{self.library}]", exc)
