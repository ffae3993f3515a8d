"""Zero-code: ``opentelemetry-instrument python app.py`` gets what ``configure()`` gives.

otelfin registers itself as an OpenTelemetry *distro* (``opentelemetry_distro`` entry point)
and *configurator* (``opentelemetry_configurator``), both named ``otelfin``. When otelfin is
the only distro installed ``opentelemetry-instrument`` picks it without any variable; beside
``opentelemetry-distro``, ``OTEL_PYTHON_DISTRO=otelfin OTEL_PYTHON_CONFIGURATOR=otelfin``
chooses it. ``opentelemetry-instrument`` then runs, in the process, before the application:

1. :class:`OtelfinDistro`.configure(): nothing to set (otelfin's defaults are its own);
2. :class:`OtelfinConfigurator`.configure(): ``otelfin.configure()`` from the environment
   (``OTEL_*``/``OTELFIN_*``), so JSON logs, masking, the catalogue, RED metrics, the
   propagator, the include list, frameworks and transports are set up exactly as in code;
3. :meth:`OtelfinDistro.load_instrumentor` for every ``opentelemetry_instrumentor`` entry
   point: the ones ``configure()`` already owns (its transport table, otelfin's own fixes and
   include list) are skipped so each is switched on once, with otelfin's options; any other
   installed instrumentation is switched on as OpenTelemetry's distro would.

A configuration mistake (a bad ``OTELFIN_*`` value, an unreadable catalogue, an unknown
exporter) is one clear line on stderr and that setting runs at its default: zero-code never
stops a host, and never turns card masking off (``OTELFIN_PAN_MASK=everything`` masks with
the default ``last4``). Should otelfin's set-up itself fail, the application's ``logging``
records are still masked as they are made (:func:`otelfin._config.fail_closed`), and stderr
says so.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]

# The SDK's configurator base class is the documented extension point for configurators
# (opentelemetry-distro subclasses it too) even though it lives in a private module.
from opentelemetry.sdk._configuration import _BaseConfigurator

from otelfin import _internal, _settings

__all__ = ["OtelfinConfigurator", "OtelfinDistro"]

_log = logging.getLogger("otelfin")

#: OpenTelemetry's own default when no service name is given (one definition, in the table).
DEFAULT_SERVICE_NAME = _settings.DEFAULT_SERVICE_NAME


def _disabled_instrumentations() -> set[str]:
    raw = _settings.env_value("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS") or ""
    return {name.strip() for name in raw.split(",") if name.strip()}


def _disabled_transports() -> set[str]:
    """Transports whose official entry point OTEL_PYTHON_DISABLED_INSTRUMENTATIONS names."""
    from importlib.metadata import entry_points

    from otelfin.instrument.transports import TABLE, TRANSPORTS

    disabled = _disabled_instrumentations()
    if "*" in disabled:
        return set(TRANSPORTS)
    off: set[str] = set()
    for ep in entry_points(group="opentelemetry_instrumentor"):
        if ep.name in disabled:
            off.update(row.name for row in TABLE if row.instrumentor == ep.value)
    return off


def _transports_setting() -> Any:
    from otelfin.instrument.transports import TRANSPORTS

    try:
        off = _disabled_transports()
    except Exception as exc:
        _internal.report("zero-code.disabled_instrumentations", exc)
        return True
    if not off:
        return True
    return [name for name in TRANSPORTS if name not in off]


class OtelfinConfigurator(_BaseConfigurator):
    """``opentelemetry_configurator`` entry point: ``otelfin.configure()`` from the environment."""

    def _configure(self, **kwargs: Any) -> None:
        from otelfin import _config

        service = _settings.env_value("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME
        try:
            _, problems = _config.configure_with_fallbacks(
                service, transports=_transports_setting()
            )
        except Exception as exc:
            # otelfin's own failure: configure_with_fallbacks kept masking on (fail_closed).
            _internal.report("zero-code.configure", exc)
            _say(
                "zero-code set-up failed; card numbers and secrets in the application's "
                f"logging stay masked ({type(exc).__name__}: {_scrubbed(exc)})"
            )
            return
        if problems:
            # One readable line: the operator's settings are wrong, the program is not; each
            # bad setting runs at its default (masking included, never off).
            _say(
                "zero-code set-up with defaults for bad settings; card masking stays on: "
                + "; ".join(problems)
            )


def _scrubbed(exc: BaseException) -> str:
    # The process default, on purpose: this runs when configure() itself failed, so no
    # options were built to hand over; the default is the scrub pillar's if it got that far,
    # else the built-in one (masking on either way).
    try:
        from otelfin.scrub import scrub_text

        return scrub_text(str(exc))
    except Exception:
        return "<unprintable>"


def _say(message: str) -> None:
    """One line on stderr, even when logging is not set up (or is the thing that failed)."""
    with contextlib.suppress(Exception):
        print(f"otelfin: {message}", file=sys.stderr, flush=True)


class OtelfinDistro(BaseDistro):  # type: ignore[misc]
    """``opentelemetry_distro`` entry point: leaves what configure() owns to configure()."""

    def _configure(self, **kwargs: Any) -> None:
        """otelfin's defaults need no environment set up before the configurator runs."""

    def load_instrumentor(self, entry_point: Any, **kwargs: Any) -> None:
        """Switch on one ``opentelemetry_instrumentor`` entry point unless otelfin owns it."""
        from otelfin import _config
        from otelfin.instrument.transports import TABLE

        value = getattr(entry_point, "value", "")
        if _config.get_config() is not None:
            if value.startswith("otelfin."):
                return  # otelfin's own fixes and include list: configure() applied them
            # A transport row: configure() switched it on, with otelfin's options. Siblings in
            # the same module (httpx's HTTPX2ClientInstrumentor) are left alone too: importing
            # that module imports the library, whose post-import hook would then run inside
            # a half-imported instrumentation module.
            modules = {row.instrumentor.partition(":")[0] for row in TABLE}
            if value.partition(":")[0] in modules:
                return
            # A library configure() instruments its own way (FastAPI, Starlette, Flask and
            # Django per app, with otelfin's options such as no ASGI "http send"/"http
            # receive" spans): the official class-swapping instrumentor would add a second,
            # differently set-up instrumentation. The entry point is named after the library.
            if getattr(entry_point, "name", None) in {row.library for row in TABLE}:
                return
        instrumentor = entry_point.load()()
        if getattr(instrumentor, "is_instrumented_by_opentelemetry", False):
            return
        instrumentor.instrument(**kwargs)
