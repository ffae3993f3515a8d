"""otelfin logging pillar: JSON lines a CI job can trust.

``otelfin.get_logger(**bound)`` writes one JSON object per line (``timestamp``, ``level``,
``service_name``, ``event``, the active span's ``trace_id``/``span_id``, then the caller's
fields), with the error-code catalogue enforced and card numbers and secrets scrubbed.
stdlib ``logging`` records go through the same chain. :func:`processors` hands the chain to
teams with their own structlog configuration; :func:`schema` is the record's JSON Schema
(``otelfin/logging/schema.json``) and ``otelfin logs validate`` checks files against it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import TYPE_CHECKING, Any

from otelfin import scrub as _scrubber
from otelfin.logging import _catalogue, _pipeline, _stdlib
from otelfin.logging._catalogue import (
    CatalogueCheck,
    UnregisteredErrorCodeError,
    unregistered_counter,
)
from otelfin.logging._pipeline import (
    LEVELS,
    Correlate,
    OtelfinLogger,
    add_level,
    exception_info,
    get_logger,
    log_service_name,
    processors,
    render_json,
    scrub_event,
)
from otelfin.logging._stdlib import OtelfinHandler

# The scrubber moved to otelfin.scrub; these names stay here so existing imports keep working.
ScrubbingSpanExporter = _scrubber.ScrubbingSpanExporter
ScrubbingSpanProcessor = _scrubber.ScrubbingSpanProcessor
scrub_text = _scrubber.scrub_text
scrub_value = _scrubber.scrub_value
find_pans = _scrubber.find_pans

if TYPE_CHECKING:
    from otelfin.catalogue import Catalogue
    from otelfin.pillar import Config, Tracing
    from otelfin.scrub import ScrubOptions
    from otelfin.tools.logs import (
        DEFAULT_MAX_LINE_BYTES,
        FileReport,
        FilterReport,
        Violation,
        filter_lines,
        validate_path,
        write_metrics_file,
    )

# The file tools (validate, filter) live in the offline wing, otelfin.tools.logs; these names
# stay importable from here, resolved on first use (PEP 562) so that a service importing the
# logging pillar never loads the tools.
_TOOL_NAMES = frozenset(
    {
        "DEFAULT_MAX_LINE_BYTES",
        "FileReport",
        "FilterReport",
        "Violation",
        "filter_lines",
        "validate_path",
        "write_metrics_file",
    }
)


def __getattr__(name: str) -> Any:
    if name in _TOOL_NAMES:
        from otelfin.tools import logs

        return getattr(logs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "get_logger",
    "processors",
    "schema",
    "validate_file",
    "filter_lines",
    "FilterReport",
    "write_metrics_file",
    "validate_path",
    "DEFAULT_MAX_LINE_BYTES",
    "FileReport",
    "Violation",
    "capture_logs",
    "CapturedLogs",
    "OtelfinLogger",
    "OtelfinHandler",
    "CatalogueCheck",
    "UnregisteredErrorCodeError",
    "unregistered_counter",
    "ScrubbingSpanExporter",
    "ScrubbingSpanProcessor",
    "scrub_text",
    "scrub_value",
    "find_pans",
    "add_level",
    "exception_info",
    "scrub_event",
    "Correlate",
    "render_json",
    "log_service_name",
]


def validate_file(
    path: str,
    catalogue: Catalogue | None = None,
    *,
    max_errors: int | None = None,
    keep: int | None = 10_000,
) -> FileReport:
    """Check a JSON-lines log file (``-`` for stdin, gzip detected) as ``otelfin logs validate``
    does: schema, registered ``error_code`` (``catalogue``: default the live/packaged one), no
    unmasked card number. ``report.bad_lines`` counts the bad lines, ``report.violations``
    lists the first ``keep`` as ``file:line: reason``; ``report.error`` names unreadable input.
    """
    from otelfin.tools.logs import validate_path

    codes = frozenset(catalogue if catalogue is not None else _catalogue.live_catalogue())
    return validate_path(path, codes, max_errors=max_errors, keep=keep)


def schema() -> dict[str, Any]:
    """The JSON Schema of an otelfin log line (shipped as ``otelfin/logging/schema.json``)."""
    text = resources.files("otelfin.logging").joinpath("schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


class CapturedLogs(list[dict[str, Any]]):
    """Log lines written while capturing, parsed; plus the raw ``lines`` and every catalogue
    ``violations`` reason (including events the ``drop`` policy kept out of the output)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[bytes] = []
        self.violations: list[str] = []

    def _line(self, line: bytes) -> None:
        import orjson

        self.lines.append(line)
        try:
            self.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            self.append({"unparsable": line.decode("utf-8", "replace")})

    def _violation(self, reason: str, event_dict: dict[str, Any]) -> None:
        self.violations.append(reason)

    def problems(self) -> list[str]:
        """Catalogue violations (dropped events included) and lines failing the validator's
        format and card-number checks; empty when the logs are clean."""
        from otelfin.tools.logs import make_line_checker

        check = make_line_checker(None)
        found = [f"catalogue: {reason}" for reason in self.violations]
        for number, line in enumerate(self.lines, 1):
            reasons = check(line.rstrip(b"\n"))
            if reasons:
                found.append(f"line {number}: {'; '.join(reasons)}")
        return found


@contextmanager
def capture_logs(echo: bool = False) -> Iterator[CapturedLogs]:
    """Collect every line otelfin writes (otelfin loggers and the stdlib bridge) meanwhile.

    ``echo=False`` keeps the lines out of the configured output.
    """
    state = _pipeline_state()
    captured = CapturedLogs()
    state.sink.taps += (captured._line,)
    state.check.listeners += (captured._violation,)
    if not echo:
        state.sink.mute += 1
    try:
        yield captured
    finally:
        state.sink.taps = tuple(t for t in state.sink.taps if t != captured._line)
        state.check.listeners = tuple(h for h in state.check.listeners if h != captured._violation)
        if not echo:
            state.sink.mute -= 1


def _pipeline_state() -> Any:
    return _pipeline._state


def install_pillar(config: Config, tracing: Tracing) -> None:
    """Apply ``config`` to the logging chain (idempotent; nothing is stacked).

    The chain is built here from what ``configure()`` hands over (the service name, the
    catalogue, the scrubber's options), so a log event reads no other package's state.
    """
    state = _pipeline_state()
    options = config.options
    _state.scrub_options = tracing.scrub_options
    state.service_name = _pipeline.log_service_name(config.service_name)
    state.min_level = LEVELS[config.log_level]
    _catalogue.use_catalogue(config.catalogue)
    state.check.update(
        config.catalogue,
        config.error_code_policy,
        config.enrich_logs,
        options["metrics_registry"],
        options["max_error_code_labels"],
        scrub_options=_state.scrub_options,
    )
    try:
        state.sink.use(config.log_file, options["log_stream"])
    except OSError as exc:
        state.sink.use(None, None)
        raise ValueError(f"log_file {config.log_file!r} cannot be opened: {exc}") from exc
    try:
        _setup_otlp(config)
    finally:
        state.chain[:] = _chain(config.service_name)
    if options["stdlib_bridge"]:
        default_code = options["stdlib_error_code"]
        if default_code is not None and default_code not in config.catalogue:
            raise ValueError(f"stdlib_error_code {default_code!r} is not in the catalogue")
        _stdlib.install(config.log_level, default_code, _state.scrub_options)
        if options["server_logs"]:
            _stdlib.take_server_loggers()
        else:
            _stdlib.give_back_server_loggers()
    else:
        _stdlib.uninstall()


def fail_closed() -> None:
    """Mask every stdlib log record as it is made, for every handler (the host's own
    included), whatever else failed in the set-up: a failed ``configure()`` never leaves the
    application's ``logging`` writing card numbers."""
    _stdlib.install_record_scrubbing(_state.scrub_options)


class _State:
    """What the logging pillar was handed and the OTLP log pipeline it runs."""

    __slots__ = ("forward", "otlp_key", "scrub_options", "shipper")

    def __init__(self) -> None:
        #: The scrubber's options configure() handed over (None: the process default).
        self.scrub_options: ScrubOptions | None = None
        #: The OTLP log pipeline in force (shipper and its chain processor) and the settings
        #: it was made for.
        self.shipper: Any = None
        self.forward: Any = None
        self.otlp_key: tuple[Any, ...] | None = None


_state = _State()
#: How long a shutdown or a dying process waits for queued OTLP log records.
OTLP_FLUSH_SECONDS = 2.0


def _chain(service_name: str | None) -> list[Any]:
    """The live chain for ``service_name`` (None: the default chain) with the scrubber's
    options handed over, and the OTLP forward, when on, just before rendering."""
    chain = _pipeline.processors(service_name=service_name, scrub_options=_state.scrub_options)
    if _state.forward is not None:
        chain.insert(len(chain) - 1, _state.forward)
    return chain


def _setup_otlp(config: Config) -> None:
    """``OTEL_LOGS_EXPORTER=otlp``: start the shipper whose
    :class:`~otelfin.logging._otlp.OtlpForward` :func:`_chain` puts in the chain (imported
    only then: the exporter costs start-up time)."""
    options = config.options
    wanted = "otlp" in options["logs_exporter"]
    key = (config.service_name, options["log_lines"]) if wanted else None
    if key == _state.otlp_key and (_state.shipper is not None) == wanted:
        return
    _stop_otlp()
    if wanted:
        from otelfin import _otlp as exporters
        from otelfin.logging import _otlp as forwarding

        # A bad protocol or a missing gRPC extra is a ValueError here: configure() reports it.
        shipper = forwarding.start(exporters.log_exporter)
        _state.forward = forwarding.OtlpForward(
            shipper, config.service_name, lines=options["log_lines"]
        )
        _state.shipper = shipper
    _state.otlp_key = key


def _stop_otlp() -> None:
    shipper, _state.shipper, _state.otlp_key = _state.shipper, None, None
    if shipper is not None:
        from otelfin.logging import _otlp as forwarding

        _state.forward = None
        _pipeline_state().chain[:] = _chain(None)
        forwarding.stop(shipper, OTLP_FLUSH_SECONDS)


def flush_pillar(timeout_seconds: float) -> bool:
    """Send the OTLP log records queued so far (a dying process, ``force_flush``)."""
    shipper = _state.shipper
    return True if shipper is None else bool(shipper.flush(timeout_seconds))


def repair_pillar(config: Config) -> None:
    """Put the stdlib bridge back if the host's logging reset removed it (same settings)."""
    if config.options["stdlib_bridge"]:
        _stdlib.install(config.log_level, config.options["stdlib_error_code"], _state.scrub_options)


def uninstall_pillar() -> None:
    """Flush and close the log output, detach the stdlib bridge, back to defaults."""
    state = _pipeline_state()
    _stdlib.uninstall()
    _stop_otlp()
    _state.scrub_options = None
    state.chain[:] = _chain(None)
    state.sink.flush()
    state.sink.close()
    state.min_level = LEVELS["info"]
    state.service_name = _pipeline.default_service_name()
    _catalogue.use_catalogue(None)
    state.check.update(None, "tag", False, None)
