"""Method include lists: trace ``module:Qualname`` entries without touching their code.

Entries such as ``payments.service:PaymentService.process_payment`` or ``payments.risk:*``
are applied to modules already imported and, through wrapt's post-import hooks, to modules
imported later, so import order never matters. Everything applied is recorded so
:func:`uninstrument` can put the originals back.
"""

from __future__ import annotations

import fnmatch
import inspect
import logging
import sys
import threading
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import wrapt
from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from otelfin import _internal, _settings
from otelfin.instrument._main import main_module_names, watch_main
from otelfin.instrument._traced import spec_of, traced

#: The variable the include list comes from (its row in the settings table).
_METHODS_INCLUDE = _settings.by_name("methods_include").env or ""

__all__ = [
    "IncludeEntry",
    "MethodIncludeInstrumentor",
    "instrument_methods",
    "parse_entries",
    "uninstrument",
]

_log = logging.getLogger("otelfin")


@dataclass(frozen=True)
class IncludeEntry:
    """One ``module:qualname`` entry; ``qualname`` may hold ``*``/``?`` globs."""

    module: str
    qualname: str

    @property
    def is_glob(self) -> bool:
        return any(ch in self.qualname for ch in "*?[")

    def __str__(self) -> str:
        return f"{self.module}:{self.qualname}"


def parse_entries(entries: Iterable[str]) -> list[IncludeEntry]:
    """Parse ``module:qualname`` strings; a malformed entry is a ``ValueError`` naming it."""
    parsed = []
    for raw in entries:
        text = raw.strip()
        if not text:
            continue
        module, sep, qualname = text.partition(":")
        if not sep or not module or not qualname or any(c in module for c in "*?[ "):
            raise ValueError(
                f"bad include entry {text!r}: expected 'package.module:Qualname' "
                "(globs allowed after the colon, e.g. 'payments.risk:*')"
            )
        parsed.append(IncludeEntry(module, qualname))
    return parsed


def parse_entries_reporting(entries: Iterable[str]) -> list[IncludeEntry]:
    """Parse ``entries`` one by one: a malformed entry is logged once, the others still apply.

    For settings an operator wrote (``OTELFIN_METHODS_INCLUDE``): one typo must neither stop
    the service nor silently discard the good entries beside it.
    """
    parsed: list[IncludeEntry] = []
    for raw in entries:
        try:
            parsed.extend(parse_entries([raw]))
        except ValueError as exc:
            _log.warning("otelfin: %s; it is ignored, the other include entries apply", exc)
    return parsed


@dataclass
class _Patch:
    owner: Any
    attr: str
    original: Any


class _Registry:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.patches: list[_Patch] = []
        self.entries: list[IncludeEntry] = []
        self.generation = 0
        self.reported: set[str] = set()
        self.hooked: set[str] = set()


_registry = _Registry()


def _candidates(module: ModuleType) -> Iterable[tuple[str, Any, str, Any]]:
    """``(qualname, owner, attribute, raw object)`` for functions and methods defined here."""
    for attr, obj in list(vars(module).items()):
        if inspect.isfunction(obj) and obj.__module__ == module.__name__:
            yield attr, module, attr, obj
        elif inspect.isclass(obj) and obj.__module__ == module.__name__:
            for member, raw in list(vars(obj).items()):
                func = raw.__func__ if isinstance(raw, (classmethod, staticmethod)) else raw
                if inspect.isfunction(func) and not (
                    member.startswith("__") and member.endswith("__")
                ):
                    yield f"{attr}.{member}", obj, member, raw


def _resolve_exact(module: ModuleType, qualname: str) -> tuple[Any, str, Any] | None:
    owner: Any = module
    parts = qualname.split(".")
    for part in parts[:-1]:
        owner = getattr(owner, part, None)
        if owner is None:
            return None
    attr = parts[-1]
    raw = vars(owner).get(attr) if hasattr(owner, "__dict__") else None
    if raw is None:
        return None
    func = raw.__func__ if isinstance(raw, (classmethod, staticmethod)) else raw
    if not callable(func):
        return None
    return owner, attr, raw


def _report_unresolved(entry: IncludeEntry, why: str) -> None:
    key = str(entry)
    if key in _registry.reported:
        return
    _registry.reported.add(key)
    _log.warning("otelfin: include entry %r matched nothing (%s); it is ignored", key, why)


def _apply_to_module(
    module: ModuleType, entries: list[IncludeEntry], generation: int, report: bool = True
) -> None:
    with _registry.lock:
        if generation != _registry.generation:
            return  # uninstrument() ran since this hook was registered
        for entry in entries:
            if entry.is_glob:
                targets = [
                    (owner, attr, raw)
                    for qualname, owner, attr, raw in _candidates(module)
                    if fnmatch.fnmatchcase(qualname, entry.qualname)
                ]
            else:
                found = _resolve_exact(module, entry.qualname)
                targets = [found] if found is not None else []
            if not targets:
                if report:
                    _report_unresolved(entry, f"no such function or method in {module.__name__}")
                continue
            for owner, attr, raw in targets:
                _patch(owner, attr, raw, entry)


def _patch(owner: Any, attr: str, raw: Any, entry: IncludeEntry) -> None:
    func = raw.__func__ if isinstance(raw, (classmethod, staticmethod)) else raw
    if spec_of(func) is not None:
        return  # already traced (decorated, or listed twice)
    try:
        wrapped = traced(raw)
        setattr(owner, attr, wrapped)
    except Exception as exc:  # a frozen class, an odd callable: skipped, never the host's error
        _report_unresolved(entry, f"{attr} cannot be wrapped: {exc}")
        return
    _registry.patches.append(_Patch(owner, attr, raw))


def instrument_methods(entries: Iterable[str | IncludeEntry]) -> list[IncludeEntry]:
    """Trace the listed functions/methods now and in modules imported later.

    Returns the parsed entries. Entries that resolve to nothing are logged once and skipped;
    a module that is never imported simply never gets patched.
    """
    parsed = [e if isinstance(e, IncludeEntry) else parse_entries([e])[0] for e in entries]
    by_module: dict[str, list[IncludeEntry]] = {}
    for entry in parsed:
        by_module.setdefault(entry.module, []).append(entry)
    main_names = main_module_names()
    with _registry.lock:
        _registry.entries.extend(parsed)
        generation = _registry.generation
        main_entries = [e for e in parsed if e.module in main_names]
        if main_entries:
            _watch_main(main_entries, generation)
        for module_name, module_entries in by_module.items():
            if module_name == "__main__":
                continue
            module = sys.modules.get(module_name)
            if module is not None and module_name not in main_names:
                _apply_to_module(module, module_entries, generation)
            else:

                def hook(mod: ModuleType, e: list[IncludeEntry] = module_entries) -> None:
                    # Runs inside the host's ``import``: a failure here must not fail it.
                    try:
                        _apply_to_module(mod, e, generation)
                    except Exception as exc:
                        _internal.report(f"include.post_import[{mod.__name__}]", exc)

                wrapt.register_post_import_hook(hook, module_name)
    return parsed


def _watch_main(entries: list[IncludeEntry], generation: int) -> None:
    """Apply entries naming the main module as its top-level definitions run (see _main)."""

    def apply(main: ModuleType, final: bool) -> None:
        # Runs from a trace function inside the host's top-level code: never raise there.
        try:
            _apply_to_module(main, entries, generation, report=final)
        except Exception as exc:
            _internal.report("include.main", exc)

    watch_main(apply)


def uninstrument() -> None:
    """Restore every function and method the include list wrapped; pending hooks go inert."""
    with _registry.lock:
        for patch in reversed(_registry.patches):
            setattr(patch.owner, patch.attr, patch.original)
        _registry.patches.clear()
        _registry.entries.clear()
        _registry.reported.clear()
        _registry.generation += 1


def applied() -> list[str]:
    """``module:qualname`` of everything currently wrapped (diagnostics, tests)."""
    with _registry.lock:
        out = []
        for patch in _registry.patches:
            owner = patch.owner
            if isinstance(owner, ModuleType):
                out.append(f"{owner.__name__}:{patch.attr}")
            else:
                out.append(f"{owner.__module__}:{owner.__qualname__}.{patch.attr}")
        return out


class MethodIncludeInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """``opentelemetry-instrument`` entry point: applies ``OTELFIN_METHODS_INCLUDE``.

    Registered under the ``opentelemetry_instrumentor`` entry-point group as ``otelfin``.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        entries = kwargs.get("methods_include") or _settings.env_value(_METHODS_INCLUDE) or ""
        if isinstance(entries, str):
            entries = [e for e in entries.replace("\n", ",").split(",") if e.strip()]
        instrument_methods(parse_entries_reporting(entries))
        # Zero-code runs whose distro is not otelfin's never call otelfin.configure(): the
        # distro's provider (set up before instrumentors load) still gets the scrubber.
        try:
            from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

            from otelfin.scrub import install_span_scrubbing

            provider = trace.get_tracer_provider()
            if isinstance(provider, SdkTracerProvider):
                install_span_scrubbing(provider, as_they_end=True)
        except Exception as exc:
            _internal.report("instrument.zero_code_scrubbing", exc)

    def _uninstrument(self, **kwargs: Any) -> None:
        uninstrument()
