"""The one place otelfin keeps global state: ``configure()``, ``shutdown()``, ``get_config()``.

Nothing happens at import time. Every setting is a row of :mod:`otelfin._settings` (its
environment variable wins over the argument given in code, which wins over the default), so
operators can change a deployed service without a code change. Object arguments
(``span_exporter``, ``tracer_provider``) cannot come from the environment and win over
``OTEL_TRACES_EXPORTER``.

The pillars (propagation, logging, metrics, instrument) never read this module's state: each
gets the effective :class:`Config` and a :class:`~otelfin.pillar.Tracing` through its
``install_pillar()`` and returns the span processors it needs, which are added here once per
provider (tracked by weak reference).
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from otelfin import _exporters, _internal, _keep, _lifecycle, _sampling, _settings
from otelfin._burst import import_burst
from otelfin.catalogue import Catalogue, default_catalogue, load_catalogue
from otelfin.pillar import FIELDS, Config, Installed, Tracing

__all__ = [
    "Config",
    "configure",
    "configure_with_fallbacks",
    "fail_closed",
    "force_flush",
    "get_config",
    "reset",
    "shutdown",
    "snapshot",
]

_log = logging.getLogger("otelfin")

_EXPORTERS = _settings.by_name("traces_exporter").choices


class _State:
    __slots__ = (
        "added",
        "call",
        "config",
        "export_key",
        "exporter",
        "key",
        "lock",
        "owns_provider",
        "processor",
        "provider",
    )

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.config: Config | None = None
        self.key: tuple[Any, ...] | None = None
        self.provider: SdkTracerProvider | None = None
        self.owns_provider = False
        self.processor: _exporters.SwappableSpanProcessor | None = None
        # The processors otelfin added to each provider, by weak reference to the provider:
        # a provider that is garbage-collected drops out, and a new one at the same address
        # is a new key (``id()`` bookkeeping got this wrong).
        self.added: weakref.WeakKeyDictionary[SdkTracerProvider, list[SpanProcessor]] = (
            weakref.WeakKeyDictionary()
        )
        self.exporter: SpanExporter | None = None
        self.export_key: tuple[Any, ...] | None = None
        #: The arguments of the configure() call in force, for snapshot() and the test fixtures.
        self.call: dict[str, Any] | None = None


_state = _State()


def _after_fork_in_child() -> None:
    # A thread of the parent may have held the lock (a configure() or shutdown() under way):
    # it does not exist in the child, so the child's first configure()/shutdown() would wait
    # forever on its copy.
    _state.lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def get_config() -> Config | None:
    """The effective configuration, or None before ``configure()``."""
    return _state.config


def _load_catalogue(value: Any, from_env: bool) -> Catalogue:
    if isinstance(value, Catalogue):
        return value
    if value is None:
        return default_catalogue()
    if from_env:
        paths = _settings.split_list(value, "OTELFIN_CATALOGUE", extra_separators=os.pathsep)
    elif isinstance(value, (str, os.PathLike)):
        paths = (os.fspath(value),)
    else:
        raise ValueError(f"catalogue must be a path or a Catalogue, not {type(value).__name__}")
    return load_catalogue(*paths)


def _exporter_name(values: Mapping[str, Any], span_exporter: SpanExporter | None) -> str:
    if span_exporter is not None:
        return "custom"
    exporter = (values["traces_exporter"] or "").lower()
    if not exporter:
        if values["spans_file"]:
            exporter = "jsonl"
        elif _settings.env_value("OTEL_EXPORTER_OTLP_ENDPOINT") or _settings.env_value(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        ):
            exporter = "otlp"
        else:
            exporter = "none"
    if exporter not in _EXPORTERS:
        raise ValueError(f"traces exporter {exporter!r} must be one of {', '.join(_EXPORTERS)}")
    return exporter


def _resolve(
    given: dict[str, Any], span_exporter: SpanExporter | None, problems: list[str] | None = None
) -> Config:
    """The effective Config. With ``problems`` (a list), bad settings, an unreadable catalogue
    and an unknown exporter fall back to their defaults, each noted in ``problems``."""
    values = _settings.resolve(given, problems=problems)
    if not values["service_name"]:
        raise ValueError("configure() needs service_name= (or OTEL_SERVICE_NAME)")
    # Any name OpenTelemetry accepts is kept as given for the ``service.name`` resource
    # attribute; the log pillar derives its lower-case hyphenated field from it.
    try:
        catalogue = _load_catalogue(
            values["catalogue"], _settings.env_value("OTELFIN_CATALOGUE") is not None
        )
    except (ValueError, OSError) as exc:  # CatalogueError is a ValueError
        if problems is None:
            raise
        problems.append(f"{exc} (the packaged catalogue used)")
        catalogue = default_catalogue()
    try:
        values["traces_exporter"] = _exporter_name(values, span_exporter)
    except ValueError as exc:
        if problems is None:
            raise
        problems.append(f"{exc} (no span export)")
        values["traces_exporter"] = "none"
    options = {k: v for k, v in values.items() if k not in FIELDS and k != "catalogue"}
    return Config(
        catalogue=catalogue,
        options=options,
        **{k: values[k] for k in FIELDS},
    )


def configure(
    service_name: str | None = None,
    *,
    span_exporter: SpanExporter | None = None,
    catalogue: str | os.PathLike[str] | Catalogue | None = None,
    error_code_policy: str | None = None,
    metrics_port: int | None = None,
    methods_include: str | list[str] | tuple[str, ...] | None = None,
    traces_exporter: str | None = None,
    spans_file: str | os.PathLike[str] | None = None,
    span_processor: str | None = None,
    tracer_provider: SdkTracerProvider | None = None,
    propagators: str | list[str] | tuple[str, ...] | None = None,
    pan_mask: str | None = None,
    log_level: str | None = None,
    log_file: str | os.PathLike[str] | None = None,
    enrich_logs: bool | None = None,
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
        error_code_policy: what an unregistered or missing error code in a log does:
            tag (default: kept and marked) | drop | raise.
        metrics_port: serve Prometheus ``/metrics`` on this port (``OTELFIN_METRICS_PORT``).
        methods_include: ``module:Qualname`` entries (``*`` globs) to trace without code
            change; ``OTELFIN_METHODS_INCLUDE`` wins.
        span_processor: ``batch`` (default) or ``simple`` (``OTELFIN_SPAN_PROCESSOR``).
        tracer_provider: use this SDK provider; by default an SDK provider the application
            already set globally is reused, else otelfin creates and sets one.
        propagators: inject formats (``OTEL_PROPAGATORS`` wins).
        pan_mask: ``last4`` (default) or ``first6last4`` (``OTELFIN_PAN_MASK``).
        log_level: the lowest level written (``OTELFIN_LOG_LEVEL``).
        log_file: append JSON log lines to this file instead of stdout (``OTELFIN_LOG_FILE``).
        enrich_logs: add the catalogue's message, retryable and http_status to error lines
            (``OTELFIN_ENRICH_LOGS``).
        **more: any other row of the settings table (``otelfin._settings.SETTINGS``; the
            settings reference lists them), e.g. ``metrics_slo=0.3``; kept in ``Config.options``.

    Arguments left at None take the table's default. Returns the effective :class:`Config`.
    Calling again with the same settings changes nothing; with different ones, the changes
    are applied in place (one processor, one propagator, one logging chain; never stacked).

    Raises ``ValueError`` (or :class:`~otelfin.catalogue.CatalogueError`) for bad settings and
    ``TypeError`` for an unknown keyword: configuration mistakes are reported at start-up, not
    at the first request.
    """
    arguments = dict(locals())  # the keyword parameters are the Config fields (+ catalogue)
    given = {name: arguments[name] for name in (*FIELDS, "catalogue")}
    given.update(more)
    try:
        return _apply(_resolve(given, span_exporter), given, span_exporter, tracer_provider)
    except BaseException:
        fail_closed()
        raise


def configure_with_fallbacks(service_name: str, **given: Any) -> tuple[Config, list[str]]:
    """``configure()`` for zero-code, where nobody can catch an exception: a bad setting, an
    unreadable catalogue, an unknown exporter or a pillar's configuration error falls back to
    the default for that setting (card masking with the default mask included) instead of
    raising. Returns the Config and what fell back (empty: all settings were good).

    Raises only for otelfin's own failures (after :func:`fail_closed`).
    """
    problems: list[str] = []
    call = {"service_name": service_name, **given}
    try:
        config = _resolve(call, None, problems)
        _apply(config, call, None, None, problems)
    except BaseException:
        fail_closed()
        raise
    if problems:
        fail_closed()
    return config, problems


def fail_closed() -> None:
    """After a failed or partial set-up, keep masking on wherever otelfin can: each pillar's
    ``fail_closed()`` (the logging pillar masks every stdlib record as it is made, for every
    handler). Never raises."""
    for module_name in _PILLARS:
        try:
            hook = getattr(importlib.import_module(module_name), "fail_closed", None)
            if hook is not None:
                hook()
        except Exception as exc:
            _internal.report(f"fail_closed[{module_name}]", exc)


def _apply(
    config: Config,
    given: dict[str, Any],
    span_exporter: SpanExporter | None,
    tracer_provider: SdkTracerProvider | None,
    problems: list[str] | None = None,
) -> Config:
    with _state.lock:
        key = (config, span_exporter, tracer_provider)
        if _state.config is not None and _key_matches(_state.key, key):
            _repair_pillars(_state.config)
            return _state.config
        _state.config = config
        _state.call = {**given, "span_exporter": span_exporter, "tracer_provider": tracer_provider}
        _state.key = None  # set only once every pillar is in place (a failed call retries)
        with import_burst():  # the pillars' imports (gc_freeze below must come after)
            tracing = _setup_tracing(config, span_exporter, tracer_provider)
            complete = _setup_pillars(config, tracing, problems)
        _lifecycle.install(force_flush, handle_signals=config.options["handle_signals"])
        if config.options["gc_freeze"]:
            _lifecycle.freeze_heap()
        if complete:  # a pillar whose failure was contained is tried again next time
            _state.key = key
        return config


def _key_matches(old: tuple[Any, ...] | None, new: tuple[Any, ...]) -> bool:
    # Objects compare by identity: an exporter or provider equal to another is not the same.
    return (
        old is not None
        and old[0] == new[0]
        and all(a is b for a, b in zip(old[1:], new[1:], strict=True))
    )


def _setup_tracing(
    config: Config,
    span_exporter: SpanExporter | None,
    tracer_provider: SdkTracerProvider | None,
) -> Tracing:
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
            return Tracing(None, False)
    elif _state.provider is not provider:
        _state.owns_provider = False
    _state.provider = provider
    options = config.options
    rules = _keep.keep_rules(
        options["keep_traces"],
        slo=options["metrics_slo"],
        operation_slos=options["metrics_operation_slos"],
        catalogue=config.catalogue,
    )
    _count_unsampled(provider, options["metrics_count_unsampled"], record_all=rules is not None)

    if _state.processor is None:
        _state.processor = _exporters.SwappableSpanProcessor()
    _add_processors(provider, (_state.processor,))
    tail = (
        rules,
        options["keep_traces_max_spans"],
        options["keep_traces_max_bytes"],
        options["keep_traces_max_age"],
    )
    export_key = (config.traces_exporter, config.spans_file, config.span_processor, tail)
    if (
        _state.processor.delegate is not None
        and _state.export_key == export_key
        and _state.exporter is span_exporter
    ):
        return Tracing(provider, _state.owns_provider)  # keep them (and their buffered spans)
    # An exporter object handed in again must not be shut down with the processor it leaves.
    reused = span_exporter is not None and _state.exporter is span_exporter
    _state.export_key, _state.exporter = export_key, span_exporter
    if span_exporter is not None:
        exporter: SpanExporter | None = span_exporter
    else:
        exporter = _exporters.make_exporter(config.traces_exporter, config.spans_file)
    delegate: SpanProcessor | None = None
    if exporter is not None:
        delegate = _exporters.ExportPipeline(
            exporter,
            batch=config.span_processor != "simple",
            factory=_exporters.OTLPSpanExporterFactory()
            if span_exporter is None and config.traces_exporter == "otlp"
            else None,
        )
        if rules is not None:
            from otelfin import _tail  # tail sampling is opt-in (keep_traces)

            delegate = _tail.TailSamplingProcessor(
                delegate,
                rules,
                max_spans=tail[1],
                max_bytes=tail[2],
                max_age=tail[3],
            )
    _state.processor.swap(delegate, shutdown_old=not reused)
    return Tracing(provider, _state.owns_provider)


def _count_unsampled(provider: SdkTracerProvider, wanted: bool, *, record_all: bool) -> None:
    """Record the unsampled spans metrics measure (see :mod:`otelfin._sampling`), or stop;
    ``record_all`` (tail sampling) records every unsampled span.

    Tracers take the provider's sampler when they are created, so this reaches every tracer
    made after ``configure()``: the transports it instruments and ``@traced`` included.
    """
    sampler = provider.sampler
    if wanted or record_all:
        provider.sampler = _sampling.wrap(sampler, record_all=record_all)
    elif isinstance(sampler, _sampling.RecordMeasuredSampler):
        provider.sampler = sampler.delegate


def _add_processors(provider: SdkTracerProvider, processors: tuple[SpanProcessor, ...]) -> None:
    """Add each processor to ``provider`` unless otelfin already added that very object."""
    added = _state.added.setdefault(provider, [])
    for processor in processors:
        if not any(p is processor for p in added):
            provider.add_span_processor(processor)
            added.append(processor)


# Each pillar package exposes ``install_pillar(config, tracing)`` and ``uninstall_pillar()``;
# configure() calls them in this order, each contained so one pillar's failure cannot stop
# the others.
_PILLARS = (
    "otelfin.scrub",  # first: the scrubber's options are every other pillar's
    "otelfin.audit",  # its start record comes first, its stop record last
    "otelfin.propagation",
    "otelfin.logging",
    "otelfin.metrics",
    "otelfin.instrument",
)


def _setup_pillars(config: Config, tracing: Tracing, problems: list[str] | None = None) -> bool:
    """Install every pillar; False if one failed (contained), so a retry installs again.

    A pillar's configuration error (ValueError/TypeError) raises, unless ``problems`` is a
    list (zero-code): then it is noted there and the other pillars are installed."""
    complete = True
    for module_name in _PILLARS:
        module = importlib.import_module(module_name)
        try:
            installed: Installed | None = module.install_pillar(config, tracing)
        except (ValueError, TypeError) as exc:
            if problems is None:
                raise  # configuration mistakes surface at start-up
            complete = False
            problems.append(f"{exc} ({module_name} set up without it)")
            continue
        except Exception as exc:
            complete = False
            _internal.report(f"configure[{module_name}]", exc)
            continue
        if installed is None:
            continue
        if tracing.provider is not None:
            _add_processors(tracing.provider, installed.span_processors)
        # What one pillar built for the next ones: the scrubber's options, the metrics
        # recorder (for the tracing pillar).
        handed = {
            name: value
            for name in ("call_observer", "scrub_options")
            if (value := getattr(installed, name)) is not None
        }
        if handed:
            tracing = dataclasses.replace(tracing, **handed)
    _hand_export_scrub_options(tracing.scrub_options)
    return complete


def _hand_export_scrub_options(options: Any) -> None:
    """The scrub pillar's options to the export pipeline's scrubber (built before that
    pillar, or kept from an earlier configure(), behind the tail-sampling processor if one);
    None (the scrub pillar failed): it follows the process default, masking on."""
    delegate = _state.processor.delegate if _state.processor is not None else None
    pipeline = getattr(delegate, "pipeline", delegate)  # the tail processor's, or itself
    if isinstance(pipeline, _exporters.ExportPipeline):
        pipeline.guarded.use_scrub_options(options)


def _contained(where: str, call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)``; a failure is reported at ``where`` and answered with False."""
    try:
        return call(*args)
    except Exception as exc:
        _internal.report(where, exc)
        return False


def _pillar_hook(module_name: str, hook: str) -> Callable[..., Any] | None:
    """The pillar's ``hook`` function (``repair_pillar``, ``flush_pillar``, ...), or None."""
    hook_function: Callable[..., Any] | None = getattr(
        importlib.import_module(module_name), hook, None
    )
    return hook_function


def _repair_pillars(config: Config) -> None:
    """``configure()`` again with the same settings: a pillar's ``repair_pillar(config)`` puts
    back what the host undid since (the logging bridge after ``basicConfig(force=True)``)."""
    for module_name in _PILLARS:
        repair = _pillar_hook(module_name, "repair_pillar")
        if repair is not None:
            _contained(f"configure.repair[{module_name}]", repair, config)


def force_flush(timeout_seconds: float = 30.0) -> bool:
    """Export every finished span now (the provider's processors, otelfin's included).

    Never raises; False when something did not finish in time. JSON log lines are written as
    they happen and Prometheus metrics are pulled; spans, and logs and metrics sent over OTLP,
    are what a dying process can lose, so each pillar's ``flush_pillar`` runs too.
    """
    millis = int(timeout_seconds * 1000)
    deadline = time.monotonic() + max(0.0, timeout_seconds)
    provider, processor = _state.provider, _state.processor
    done = True
    flushing = provider if provider is not None else processor
    if flushing is not None:
        done = bool(_contained("force_flush", flushing.force_flush, millis))
    # Logs and metrics sent over OTLP are queued too (OTEL_LOGS/METRICS_EXPORTER=otlp).
    for module_name in _PILLARS:
        flush = _pillar_hook(module_name, "flush_pillar")
        if flush is not None:
            left = max(0.0, deadline - time.monotonic())
            done = bool(_contained(f"force_flush[{module_name}]", flush, left)) and done
    return done


def shutdown(timeout_millis: int = 30000) -> None:
    """Flush spans, metrics and logs and stop otelfin's background work. Never raises.

    Returns within about ``timeout_millis`` whatever the collector does (down, hanging,
    answering errors): spans not exported by then are counted in
    ``otelfin_spans_dropped_total{reason="shutdown"}``.
    """
    _lifecycle.uninstall()
    deadline = time.monotonic() + max(0, timeout_millis) / 1000
    with _state.lock:
        processor = _state.processor
        # Flush first, while the pillars (the span scrubber above all) are still in place.
        if processor is not None:
            _contained("shutdown.flush", processor.force_flush, timeout_millis)
        for module_name in reversed(_PILLARS):
            _contained(f"shutdown[{module_name}]", _uninstall_pillar, module_name)
        if processor is not None:
            # What the flush left over gets the rest of the budget, then counts as dropped.
            remaining = max(0.0, (deadline - time.monotonic()) * 1000)
            processor.swap(None, timeout_millis=remaining)
        _state.export_key, _state.exporter = None, None
        if _state.owns_provider and _state.provider is not None:
            _contained("shutdown.provider", _state.provider.shutdown)
        _state.config = None
        _state.key = None


def _uninstall_pillar(module_name: str) -> None:
    importlib.import_module(module_name).uninstall_pillar()


def reset() -> None:
    """Forget all otelfin state without touching OpenTelemetry's globals (tests)."""
    shutdown()
    with _state.lock:
        _state.provider = None
        _state.owns_provider = False
        _state.processor = None
        _state.added = weakref.WeakKeyDictionary()


def snapshot() -> tuple[dict[str, Any], SdkTracerProvider | None] | None:
    """What puts the configuration in force back after a test replaced it, or None.

    The arguments of the ``configure()`` call in force, and the application's own SDK provider
    when otelfin reused one (a provider otelfin created is shut down by ``reset()``; a new one
    is made instead). Used by ``otelfin.testing``: an app's import-time ``configure()`` must
    survive a fixture, or tests would pass or fail by their order.
    """
    with _state.lock:
        if _state.config is None or _state.call is None:
            return None
        provider = _state.provider if not _state.owns_provider else None
        return dict(_state.call), provider
