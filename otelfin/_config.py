"""The one place otelfin keeps global state: ``configure()``, ``shutdown()``, ``get_config()``.

Nothing happens at import time. Precedence for every plain setting: an ``OTEL_*``/``OTELFIN_*``
environment variable, then the argument given in code, then the built-in default, so operators
can change a deployed service without a code change. Object arguments (``span_exporter``,
``tracer_provider``) cannot come from the environment and win over ``OTEL_TRACES_EXPORTER``.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter

from otelfin import _exporters, _internal, _lifecycle
from otelfin.catalogue import Catalogue, ErrorCode, default_catalogue, load_catalogue
from otelfin.instrument import _traced

__all__ = ["Config", "configure", "force_flush", "get_config", "reset", "shutdown"]

_log = logging.getLogger("otelfin")

ErrorCodePolicy = Literal["drop", "tag", "raise"]
_POLICIES = ("drop", "tag", "raise")
_EXPORTERS = ("none", "console", "jsonl", "otlp")
_PAN_MASKS = ("last4", "first6last4")


@dataclass(frozen=True)
class Config:
    """The effective settings after ``configure()`` (environment applied)."""

    service_name: str
    catalogue: Catalogue
    catalogue_paths: tuple[str, ...] = ()
    error_code_policy: ErrorCodePolicy = "drop"
    metrics_port: int | None = None
    methods_include: tuple[str, ...] = ()
    traces_exporter: str = "none"
    spans_file: str | None = None
    span_processor: Literal["batch", "simple"] = "batch"
    propagators: tuple[str, ...] = ("tracecontext", "baggage")
    pan_mask: Literal["last4", "first6last4"] = "last4"
    log_level: str = "info"
    log_file: str | None = None
    enrich_logs: bool = False
    #: Options for one pillar that have no field of their own yet (``configure(**more)``).
    options: Mapping[str, Any] = field(default_factory=dict)


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.config: Config | None = None
        self.key: tuple[Any, ...] | None = None
        self.provider: SdkTracerProvider | None = None
        self.owns_provider = False
        self.processor: _exporters.SwappableSpanProcessor | None = None
        self.providers_with_processor: set[int] = set()
        self.export_key: tuple[Any, ...] = (None, None, None, None)


_state = _State()


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value.strip() if value is not None and value.strip() else None


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in re.split(r"[,\n]", value) if part.strip())


def _lookup_code(code: str) -> ErrorCode | None:
    config = _state.config
    catalogue = config.catalogue if config is not None else default_catalogue()
    return catalogue.get(code)


def get_config() -> Config | None:
    """The effective configuration, or None before ``configure()``."""
    return _state.config


def current_catalogue() -> Catalogue:
    """The configured catalogue, or the packaged default before ``configure()``."""
    config = _state.config
    return config.catalogue if config is not None else default_catalogue()


# Every ``configure(**more)`` key a pillar reads from ``Config.options``; anything else is a
# typo that would otherwise be ignored in silence (``metric_port=9464`` serving nothing).
_PILLAR_OPTIONS = frozenset(
    {
        "metrics_registry",
        "metrics_labels",
        "metrics_allow_labels",
        "metrics_buckets",
        "metrics_slo",
        "metrics_p99",
        "metrics_max_series",
        "metrics_exemplars",
        "metrics_addr",
        "secret_keys",
        "scrub_all_spans",
        "max_error_code_labels",
        "log_stream",
        "stdlib_bridge",
        "stdlib_error_code",
        "transports",
        "handle_signals",
        "server_logs",
        "db_record_parameters",
    }
)


def _check_options(options: Mapping[str, Any]) -> None:
    unknown = sorted(set(options) - _PILLAR_OPTIONS)
    if not unknown:
        return
    import difflib
    import inspect

    known = [*inspect.signature(configure).parameters, *_PILLAR_OPTIONS]
    close = difflib.get_close_matches(unknown[0], known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise TypeError(f"configure() got an unexpected keyword argument {unknown[0]!r}{hint}")


def _resolve(
    service_name: str | None,
    span_exporter: SpanExporter | None,
    catalogue: str | os.PathLike[str] | Catalogue | None,
    error_code_policy: str,
    metrics_port: int | None,
    methods_include: str | list[str] | tuple[str, ...] | None,
    traces_exporter: str | None,
    spans_file: str | os.PathLike[str] | None,
    span_processor: str,
    propagators: str | list[str] | tuple[str, ...] | None,
    pan_mask: str,
    log_level: str,
    log_file: str | os.PathLike[str] | None,
    enrich_logs: bool,
    options: dict[str, Any],
) -> Config:
    _check_options(options)
    name = _env("OTEL_SERVICE_NAME") or service_name
    if not isinstance(name, str) or not name.strip():
        raise ValueError("configure() needs service_name= (or OTEL_SERVICE_NAME)")
    # Any name OpenTelemetry accepts is kept as given for the ``service.name`` resource
    # attribute; the log pillar derives its lower-case hyphenated field from it.

    paths: tuple[str, ...] = ()
    env_catalogue = _env("OTELFIN_CATALOGUE")
    if env_catalogue:
        paths = tuple(p for p in re.split(rf"[,{re.escape(os.pathsep)}]", env_catalogue) if p)
        loaded = load_catalogue(*paths)
    elif isinstance(catalogue, Catalogue):
        loaded = catalogue
    elif catalogue is not None:
        paths = (os.fspath(catalogue),)
        loaded = load_catalogue(*paths)
    else:
        loaded = default_catalogue()

    policy = (_env("OTELFIN_ERROR_CODE_POLICY") or error_code_policy).lower()
    if policy not in _POLICIES:
        raise ValueError(f"error_code_policy {policy!r} must be one of {', '.join(_POLICIES)}")

    port_text = _env("OTELFIN_METRICS_PORT")
    port = metrics_port
    if port_text is not None:
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError(f"OTELFIN_METRICS_PORT={port_text!r} is not a port number") from None
    if port is not None and not 0 <= port <= 65535:
        raise ValueError(f"metrics_port {port} is not a port number")

    include_env = _env("OTELFIN_METHODS_INCLUDE")
    if include_env is not None:
        include = _split(include_env)
    elif isinstance(methods_include, str):
        include = _split(methods_include)
    else:
        include = tuple(methods_include or ())

    file_env = _env("OTELFIN_SPANS_FILE")
    spans_path = file_env or (os.fspath(spans_file) if spans_file is not None else None)
    exporter = (_env("OTEL_TRACES_EXPORTER") or traces_exporter or "").lower()
    if span_exporter is not None:
        exporter = "custom"
    elif not exporter:
        if spans_path:
            exporter = "jsonl"
        elif _env("OTEL_EXPORTER_OTLP_ENDPOINT") or _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            exporter = "otlp"
        else:
            exporter = "none"
    if exporter not in (*_EXPORTERS, "custom"):
        raise ValueError(f"traces exporter {exporter!r} must be one of {', '.join(_EXPORTERS)}")

    processor = (_env("OTELFIN_SPAN_PROCESSOR") or span_processor).lower()
    if processor not in ("batch", "simple"):
        raise ValueError(f"span_processor {processor!r} must be 'batch' or 'simple'")

    prop_env = _env("OTEL_PROPAGATORS")
    if prop_env is not None:
        props = _split(prop_env)
    elif isinstance(propagators, str):
        props = _split(propagators)
    else:
        props = tuple(propagators or ("tracecontext", "baggage"))

    mask = (_env("OTELFIN_PAN_MASK") or pan_mask).lower()
    if mask not in _PAN_MASKS:
        raise ValueError(f"pan_mask {mask!r} must be one of {', '.join(_PAN_MASKS)}")

    level = (_env("OTELFIN_LOG_LEVEL") or log_level).lower()
    if level not in ("debug", "info", "warning", "error", "critical"):
        raise ValueError(f"log_level {level!r} must be debug, info, warning, error or critical")
    log_path = _env("OTELFIN_LOG_FILE") or (os.fspath(log_file) if log_file else None)

    return Config(
        service_name=name,
        catalogue=loaded,
        catalogue_paths=tuple(str(Path(p)) for p in paths),
        error_code_policy=policy,  # type: ignore[arg-type]
        metrics_port=port,
        methods_include=include,
        traces_exporter=exporter,
        spans_file=spans_path,
        span_processor=processor,  # type: ignore[arg-type]
        propagators=props,
        pan_mask=mask,  # type: ignore[arg-type]
        log_level=level,
        log_file=log_path,
        enrich_logs=enrich_logs,
        options=dict(options),
    )


def configure(
    service_name: str | None = None,
    *,
    span_exporter: SpanExporter | None = None,
    catalogue: str | os.PathLike[str] | Catalogue | None = None,
    error_code_policy: str = "drop",
    metrics_port: int | None = None,
    methods_include: str | list[str] | tuple[str, ...] | None = None,
    traces_exporter: str | None = None,
    spans_file: str | os.PathLike[str] | None = None,
    span_processor: str = "batch",
    tracer_provider: SdkTracerProvider | None = None,
    propagators: str | list[str] | tuple[str, ...] | None = None,
    pan_mask: str = "last4",
    log_level: str = "info",
    log_file: str | os.PathLike[str] | None = None,
    enrich_logs: bool = False,
    **more: Any,
) -> Config:
    """Set up tracing, propagation, metrics and logging for this process. Idempotent.

    Args:
        service_name: any name (``payment-gateway``, ``payments_api``, ``Payments API``) kept
            as ``service.name``; logs carry a lower-case hyphenated form (``payments-api``);
            ``OTEL_SERVICE_NAME`` wins.
        span_exporter: any OpenTelemetry ``SpanExporter``; otelfin's scrubber sits in front.
            Without it: ``OTEL_TRACES_EXPORTER`` (none|console|jsonl|otlp), else ``jsonl`` when
            ``spans_file``/``OTELFIN_SPANS_FILE`` is set, else ``otlp`` when
            ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, else none.
        catalogue: a service catalogue file (or :class:`~otelfin.catalogue.Catalogue`) laid
            over the packaged default; ``OTELFIN_CATALOGUE`` (comma separated) wins.
        error_code_policy: what an unregistered error code in a log does: drop | tag | raise.
        metrics_port: serve Prometheus ``/metrics`` on this port (``OTELFIN_METRICS_PORT``).
        methods_include: ``module:Qualname`` entries (``*`` globs) to trace without code
            change; ``OTELFIN_METHODS_INCLUDE`` wins.
        span_processor: ``batch`` (default) or ``simple`` (``OTELFIN_SPAN_PROCESSOR``).
        tracer_provider: use this SDK provider; by default an SDK provider the application
            already set globally is reused, else otelfin creates and sets one.
        propagators: inject formats (``OTEL_PROPAGATORS`` wins).
        pan_mask: ``last4`` (default) or ``first6last4`` (``OTELFIN_PAN_MASK``).
        log_level, log_file, enrich_logs: logging pillar settings (``OTELFIN_LOG_LEVEL``,
            ``OTELFIN_LOG_FILE``).
        **more: pillar options without a named argument, kept in ``Config.options``.

    Returns the effective :class:`Config`. Calling again with the same settings changes
    nothing; with different ones, the changes are applied in place (one processor, one
    propagator, one logging chain; never stacked).

    Raises ``ValueError`` (or :class:`~otelfin.catalogue.CatalogueError`) for bad settings and
    ``TypeError`` for an unknown keyword: configuration mistakes are reported at start-up, not
    at the first request.
    """
    config = _resolve(
        service_name,
        span_exporter,
        catalogue,
        error_code_policy,
        metrics_port,
        methods_include,
        traces_exporter,
        spans_file,
        span_processor,
        propagators,
        pan_mask,
        log_level,
        log_file,
        enrich_logs,
        more,
    )
    key = (config, id(span_exporter), id(tracer_provider))
    with _state.lock:
        if _state.config is not None and _state.key == key:
            return _state.config
        previous = _state.config
        _state.config = config
        _state.key = key
        _traced._set_code_lookup(_lookup_code)
        _setup_tracing(config, span_exporter, tracer_provider, previous)
        _setup_pillars(config)
        _lifecycle.install(force_flush, handle_signals=config.options.get("handle_signals", True))
        return config


def _setup_tracing(
    config: Config,
    span_exporter: SpanExporter | None,
    tracer_provider: SdkTracerProvider | None,
    previous: Config | None,
) -> None:
    provider = tracer_provider
    if provider is None:
        current = trace.get_tracer_provider()
        if isinstance(current, SdkTracerProvider):
            provider = current  # the application's (or ours from an earlier configure)
            if _state.provider is not current:
                _state.owns_provider = False
        elif isinstance(current, trace.ProxyTracerProvider):
            provider = SdkTracerProvider(
                resource=Resource.create({"service.name": config.service_name})
            )
            trace.set_tracer_provider(provider)
            _state.owns_provider = True
        else:
            _log.warning(
                "otelfin: the global tracer provider is a %s, not an SDK TracerProvider; "
                "spans are left to it",
                type(current).__name__,
            )
            _state.provider = None
            return
    elif _state.provider is not provider:
        _state.owns_provider = False
    _state.provider = provider

    export_key = (
        id(span_exporter),
        config.traces_exporter,
        config.spans_file,
        config.span_processor,
    )
    if (
        _state.processor is not None
        and _state.processor.delegate is not None
        and _state.export_key == export_key
        and id(provider) in _state.providers_with_processor
    ):
        return  # same exporter and processor: keep them (and their buffered spans)
    reused = span_exporter is not None and _state.export_key[0] == id(span_exporter)
    _state.export_key = export_key
    if span_exporter is not None:
        exporter: SpanExporter | None = span_exporter
    else:
        exporter = _exporters.make_exporter(config.traces_exporter, config.spans_file)
    if _state.processor is None:
        _state.processor = _exporters.SwappableSpanProcessor()
    if id(provider) not in _state.providers_with_processor:
        provider.add_span_processor(_state.processor)
        _state.providers_with_processor.add(id(provider))
    delegate: SpanProcessor | None = None
    if exporter is not None:
        guarded = _exporters.GuardedExporter(exporter)
        delegate = (
            SimpleSpanProcessor(guarded)
            if config.span_processor == "simple"
            else BatchSpanProcessor(guarded)
        )
    # An exporter object handed in again must not be shut down with the processor it leaves.
    _state.processor.swap(delegate, shutdown_old=not reused)


# Each pillar exposes ``_install(config)`` and ``_uninstall()`` in its package; configure()
# calls them in this order, each contained so one pillar's failure cannot stop the others.
_PILLARS = (
    "otelfin.scrub",  # first: the scrubber's options are every other pillar's
    "otelfin.propagation",
    "otelfin.logging",
    "otelfin.metrics",
    "otelfin.instrument",
)


def _setup_pillars(config: Config) -> None:
    import importlib

    for module_name in _PILLARS:
        module = importlib.import_module(module_name)
        install = getattr(module, "_install", None)
        if install is None:
            continue
        try:
            install(config)
        except (ValueError, TypeError):
            raise  # configuration mistakes surface at start-up
        except Exception as exc:
            _internal.report(f"configure[{module_name}]", exc)


def force_flush(timeout_seconds: float = 30.0) -> bool:
    """Export every finished span now (the provider's processors, otelfin's included).

    Never raises; False when something did not finish in time. Logs are written as they
    happen and Prometheus metrics are pulled, so spans are what a dying process can lose.
    """
    millis = int(timeout_seconds * 1000)
    provider, processor = _state.provider, _state.processor
    try:
        if provider is not None:
            return bool(provider.force_flush(millis))
        if processor is not None:
            return bool(processor.force_flush(millis))
    except Exception as exc:
        _internal.report("force_flush", exc)
        return False
    return True


def shutdown(timeout_millis: int = 30000) -> None:
    """Flush spans, metrics and logs and stop otelfin's background work. Never raises."""
    import importlib

    _lifecycle.uninstall()
    with _state.lock:
        processor = _state.processor
        # Flush first, while the pillars (the span scrubber above all) are still in place.
        if processor is not None:
            try:
                processor.force_flush(timeout_millis)
            except Exception as exc:
                _internal.report("shutdown.flush", exc)
        for module_name in reversed(_PILLARS):
            try:
                module = importlib.import_module(module_name)
                uninstall = getattr(module, "_uninstall", None)
                if uninstall is not None:
                    uninstall()
            except Exception as exc:
                _internal.report(f"shutdown[{module_name}]", exc)
        if processor is not None:
            processor.swap(None)
            _state.export_key = (None, None, None, None)
        if _state.owns_provider and _state.provider is not None:
            try:
                _state.provider.shutdown()
            except Exception as exc:
                _internal.report("shutdown.provider", exc)
        _state.config = None
        _state.key = None


def reset() -> None:
    """Forget all otelfin state without touching OpenTelemetry's globals (tests)."""
    shutdown()
    with _state.lock:
        _state.provider = None
        _state.owns_provider = False
        _state.processor = None
        _state.providers_with_processor.clear()
    _traced._set_code_lookup(_lookup_code)
