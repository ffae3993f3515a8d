"""Every setting otelfin reads, as one declarative table.

A row names the ``configure()`` keyword, the environment variable that overrides it, the
default, the parser (which also validates, and names where a bad value came from) and a line
of documentation. ``otelfin.configure()`` resolves the whole table in one loop; the docs'
settings reference is generated from it. A pillar's option is a row here, grouped under that
pillar: adding a setting is adding a row, nothing else reads ``os.environ`` for configuration.

Precedence for every row: the environment variable (operators change a deployed service
without a code change), then the argument given in code, then the default. Rows marked
``code_only`` take objects (registries, streams) that cannot come from the environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from otelfin.catalogue import LEVEL_NAMES

__all__ = [
    "SETTINGS",
    "Setting",
    "by_name",
    "default",
    "env_value",
    "markdown_table",
    "resolve",
    "split_list",
]

Parser = Callable[[Any, str], Any]

#: The latency SLO in seconds when none is given (``metrics_slo``); every default SLO is this.
DEFAULT_SLO = 0.25
#: Client timeouts people set by hand (seconds): the histogram layout has narrow buckets at each
#: unless the service declares its own (``metrics_timeouts``).
ROUND_TIMEOUTS: tuple[float, ...] = (
    0.1,
    0.2,
    0.25,
    0.5,
    1.0,
    2.0,
    3.0,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    60.0,
)
#: The service name when none is given: OpenTelemetry's own default (logs write it with a
#: hyphen, as every log service name is lower-case and hyphenated).
DEFAULT_SERVICE_NAME = "unknown_service"


@dataclass(frozen=True)
class Setting:
    """One row of the settings table."""

    name: str
    pillar: str
    default: Any
    parse: Parser
    env: str | None = None
    doc: str = ""
    choices: tuple[str, ...] = ()
    code_only: bool = False

    def __post_init__(self) -> None:
        # A choice row names its choices once, in its parser (``_choice(...)``).
        if not self.choices:
            object.__setattr__(self, "choices", tuple(getattr(self.parse, "choices", ())))


# --- parsers: (raw value, where it came from) -> value; ValueError names ``where`` ------------


def split_list(value: Any, where: str = "value", extra_separators: str = "") -> tuple[str, ...]:
    """A list setting: a comma/newline separated string, or any iterable of strings."""
    if value is None:
        return ()
    if isinstance(value, str):
        pattern = "[,\n" + re.escape(extra_separators) + "]"
        return tuple(part.strip() for part in re.split(pattern, value) if part.strip())
    try:
        items = tuple(value)
    except TypeError:
        raise ValueError(f"{where} must be a list or a comma-separated string") from None
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{where} must hold strings, not {type(item).__name__}")
    return tuple(item.strip() for item in items if item.strip())


def _text(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        return os.fspath(value)  # type: ignore[no-any-return]
    if not isinstance(value, str):
        raise ValueError(f"{where} must be a string, not {type(value).__name__}")
    return value.strip() or None


def _choice(*choices: str) -> Parser:
    def parse(value: Any, where: str) -> str:
        text = (_text(value, where) or "").lower()
        if text not in choices:
            raise ValueError(f"{where}={value!r} must be one of {', '.join(choices)}")
        return text

    parse.choices = choices  # type: ignore[attr-defined]  # the row's choices (Setting)
    return parse


def _boolean(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
    raise ValueError(f"{where}={value!r} must be true or false")


def _integer(low: int, high: int | None = None, allow_none: bool = False) -> Parser:
    def parse(value: Any, where: str) -> int | None:
        if value is None and allow_none:
            return None
        if isinstance(value, bool):
            raise ValueError(f"{where}={value!r} must be an integer")
        try:
            number = int(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}={value!r} must be an integer") from None
        if number < low or (high is not None and number > high):
            bound = f"between {low} and {high}" if high is not None else f">= {low}"
            raise ValueError(f"{where}={value!r} must be {bound}")
        return number

    return parse


def _port(value: Any, where: str) -> int | None:
    if value is None:
        return None
    try:
        return _integer(0, 65535)(value, where)  # type: ignore[no-any-return]
    except ValueError:
        raise ValueError(f"{where}={value!r} is not a port number (0-65535)") from None


def _positive_number(allow_none: bool = False) -> Parser:
    def parse(value: Any, where: str) -> float | None:
        if value is None and allow_none:
            return None
        try:
            number = float(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}={value!r} must be a number") from None
        if not 0 < number < float("inf"):
            raise ValueError(f"{where}={value!r} must be a positive finite number")
        return number

    return parse


def _numbers(value: Any, where: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    parts = split_list(value, where) if isinstance(value, str) else value
    try:
        return tuple(float(part) for part in parts)
    except (TypeError, ValueError):
        raise ValueError(f"{where}={value!r} must be a list of numbers") from None


def _timeouts(value: Any, where: str) -> tuple[float, ...] | None:
    """None (the round values), ``none`` (no timeout bounds), or seconds; the word ``round``
    in the list stands for :data:`ROUND_TIMEOUTS`."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() == "none":
        return ()
    parts = split_list(value, where) if isinstance(value, str) else value
    found: set[float] = set()
    try:
        for part in parts:
            if isinstance(part, str) and part.strip().lower() == "round":
                found.update(ROUND_TIMEOUTS)
                continue
            number = float(part)
            if not 0 < number < float("inf"):
                raise ValueError
            found.add(number)
    except (TypeError, ValueError):
        raise ValueError(
            f"{where}={value!r} must be timeouts in seconds (and 'round' for the round values), "
            "or 'none'"
        ) from None
    return tuple(sorted(found))


def _names(value: Any, where: str) -> tuple[str, ...]:
    return split_list(value, where)


def _optional_text(value: Any, where: str) -> str | None:
    return _text(value, where)


def _transports(value: Any, where: str) -> bool | tuple[str, ...]:
    """``True`` (all installed), ``False`` (none) or the names of some."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("all", "true", "1", "yes"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("none", "false", "0", "no", ""):
        return False
    return split_list(value, where)


def _operation_slos(value: Any, where: str) -> tuple[tuple[str, float], ...]:
    """``{"risk.score": 0.01}`` or ``"risk.score=0.01,POST /payments=0.25"``."""
    if value is None:
        return ()
    if isinstance(value, str):
        pairs = []
        for part in split_list(value, where):
            name, sep, number = part.rpartition("=")
            if not sep or not name.strip():
                raise ValueError(f"{where}: {part!r} is not OPERATION=SECONDS")
            pairs.append((name.strip(), number))
    elif isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        raise ValueError(f"{where} must be a mapping or 'OPERATION=SECONDS,...'")
    parse = _positive_number()
    return tuple((str(name), float(parse(number, f"{where}[{name}]"))) for name, number in pairs)


def _keep_reasons(value: Any, where: str) -> tuple[str, ...]:
    """``error,declined,slow`` (any of them), ``all``, or ``none``/empty for off."""
    names = tuple(name.lower() for name in split_list(value, where))
    if names in (("all",),):
        return _KEEP_REASONS
    if names in (("none",), ("off",)):
        return ()
    unknown = [name for name in names if name not in _KEEP_REASONS]
    if unknown:
        raise ValueError(
            f"{where}={value!r}: unknown reason {unknown[0]!r} "
            f"(expected any of {', '.join(_KEEP_REASONS)}, all or none)"
        )
    return tuple(dict.fromkeys(names))


_KEEP_REASONS = ("error", "declined", "slow")


def _secret_text(value: Any, where: str) -> str | None:
    """A key: text (never echoed in the error, which would print the secret)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "surrogateescape")
    if not isinstance(value, str):
        raise ValueError(f"{where} must be a string, not {type(value).__name__}")
    return value.strip() or None


def _exporters(*known: str) -> Parser:
    """OpenTelemetry's ``OTEL_*_EXPORTER`` form: a comma-separated list of exporter names;
    ``none`` alone means none. Returns the names otelfin acts on (``prometheus`` is what the
    registry and ``/metrics`` always do, so it adds nothing)."""

    def parse(value: Any, where: str) -> tuple[str, ...]:
        names = tuple(n.lower() for n in split_list(value, where))
        unknown = [n for n in names if n not in (*known, "none")]
        if unknown:
            raise ValueError(
                f"{where}={value!r}: {unknown[0]!r} is not one of {', '.join((*known, 'none'))}"
            )
        return tuple(n for n in dict.fromkeys(names) if n not in ("none", "prometheus"))

    return parse


def _anything(value: Any, where: str) -> Any:
    return value


_LEVELS = LEVEL_NAMES

SETTINGS: tuple[Setting, ...] = (
    # --- core ---------------------------------------------------------------------------------
    Setting(
        "service_name",
        "core",
        None,
        _optional_text,
        "OTEL_SERVICE_NAME",
        "the service's name (resource attribute service.name); required",
    ),
    Setting(
        "catalogue",
        "core",
        None,
        _anything,
        "OTELFIN_CATALOGUE",
        "service catalogue file(s) laid over the packaged default (comma separated)",
    ),
    Setting(
        "error_code_policy",
        "logging",
        "tag",
        _choice("tag", "drop", "raise"),
        "OTELFIN_ERROR_CODE_POLICY",
        "an unregistered or missing error code on an error log: tag (kept and marked), drop "
        "or raise",
    ),
    # --- tracing ------------------------------------------------------------------------------
    Setting(
        "traces_exporter",
        "tracing",
        None,
        _optional_text,
        "OTEL_TRACES_EXPORTER",
        "none, console, jsonl or otlp (default: jsonl with spans_file, otlp with an "
        "OTLP endpoint, else none)",
        choices=("none", "console", "jsonl", "otlp"),
    ),
    Setting(
        "spans_file",
        "tracing",
        None,
        _optional_text,
        "OTELFIN_SPANS_FILE",
        "write spans as OTLP/JSON lines to this file",
    ),
    Setting(
        "span_processor",
        "tracing",
        "batch",
        _choice("batch", "simple"),
        "OTELFIN_SPAN_PROCESSOR",
        "batch (default) or simple",
    ),
    Setting(
        "keep_traces",
        "tracing",
        (),
        _keep_reasons,
        "OTELFIN_KEEP_TRACES",
        "export whole every local trace that ends in error, declined or over its SLO (slow), "
        "whatever the head sampler said; e.g. error,declined,slow",
    ),
    Setting(
        "keep_traces_max_spans",
        "tracing",
        20_000,
        _integer(1),
        "OTELFIN_KEEP_TRACES_MAX_SPANS",
        "spans of undecided traces kept waiting at most (beyond: dropped and counted)",
    ),
    Setting(
        "keep_traces_max_bytes",
        "tracing",
        64 * 1024 * 1024,
        _integer(1),
        "OTELFIN_KEEP_TRACES_MAX_BYTES",
        "estimated bytes of waiting spans at most (beyond: dropped and counted)",
    ),
    Setting(
        "keep_traces_max_age",
        "tracing",
        60.0,
        _positive_number(),
        "OTELFIN_KEEP_TRACES_MAX_AGE",
        "seconds a trace may stay undecided before its waiting spans are dropped and counted",
    ),
    Setting(
        "methods_include",
        "instrument",
        (),
        _names,
        "OTELFIN_METHODS_INCLUDE",
        "module:Qualname entries (globs after the colon) traced without code change",
    ),
    Setting(
        "db_record_parameters",
        "instrument",
        False,
        _boolean,
        "OTELFIN_DB_RECORD_PARAMETERS",
        "record database statement parameters on spans (scrubbed); off by default",
    ),
    Setting(
        "handle_signals",
        "core",
        True,
        _boolean,
        "OTELFIN_HANDLE_SIGNALS",
        "flush finished spans when SIGTERM/SIGINT ends the process (bounded)",
    ),
    Setting(
        "gc_freeze",
        "core",
        False,
        _boolean,
        "OTELFIN_GC_FREEZE",
        "gc.freeze() at configure() and again 5 s later, so gen-2 collections skip start-up "
        "objects (shorter pauses in the latency tail)",
    ),
    Setting(
        "transports",
        "instrument",
        True,
        _transports,
        "OTELFIN_TRANSPORTS",
        "instrument every installed transport (true), none (false) or these names",
    ),
    # --- propagation --------------------------------------------------------------------------
    Setting(
        "propagators",
        "propagation",
        ("tracecontext", "baggage"),
        _names,
        "OTEL_PROPAGATORS",
        "inject formats: tracecontext, baggage, b3, b3multi, none",
    ),
    # --- scrubbing ----------------------------------------------------------------------------
    Setting(
        "pan_mask",
        "scrub",
        "last4",
        _choice("last4", "first6last4"),
        "OTELFIN_PAN_MASK",
        "card number mask: last4 or first6last4",
    ),
    Setting(
        "secret_keys",
        "scrub",
        (),
        _names,
        "OTELFIN_SECRET_KEYS",
        "extra key names whose values are redacted",
    ),
    Setting(
        "scrub_secret_keys",
        "scrub",
        (),
        _names,
        "OTELFIN_SCRUB_SECRET_KEYS",
        "more key names whose values are redacted (added to secret_keys and the built-in words)",
    ),
    Setting(
        "scrub_keep_keys",
        "scrub",
        (),
        _names,
        "OTELFIN_SCRUB_KEEP_KEYS",
        "whole key names that are never secrets (auth_code, approval_code are kept already); "
        "card numbers in their values are still masked",
    ),
    Setting(
        "pan_fingerprint_key",
        "scrub",
        None,
        _secret_text,
        "OTELFIN_PAN_FINGERPRINT_KEY",
        "secret key: every masked card number is followed by fp_ + 16 hex (HMAC-SHA256)",
    ),
    Setting(
        "pan_fingerprint_key_file",
        "scrub",
        None,
        _optional_text,
        "OTELFIN_PAN_FINGERPRINT_KEY_FILE",
        "a file holding the fingerprint key (first line), instead of pan_fingerprint_key",
    ),
    Setting(
        "audit_file",
        "audit",
        None,
        _optional_text,
        "OTELFIN_AUDIT_FILE",
        "append hash-chained audit records (otelfin.audit.record) to this file",
    ),
    Setting(
        "audit_key",
        "audit",
        None,
        _secret_text,
        "OTELFIN_AUDIT_KEY",
        "secret key: the audit chain uses HMAC-SHA256 instead of a plain SHA-256 hash",
    ),
    Setting(
        "scrub_all_spans",
        "scrub",
        "auto",
        _anything,
        None,
        "scrub spans as they end (true) or at export (false); auto decides by provider",
    ),
    # --- logging ------------------------------------------------------------------------------
    Setting(
        "log_level",
        "logging",
        "info",
        _choice(*_LEVELS),
        "OTELFIN_LOG_LEVEL",
        "lowest level written",
    ),
    Setting(
        "log_file",
        "logging",
        None,
        _optional_text,
        "OTELFIN_LOG_FILE",
        "append JSON lines to this file instead of stdout",
    ),
    Setting(
        "log_stream",
        "logging",
        None,
        _anything,
        None,
        "write JSON lines to this binary or text stream",
        code_only=True,
    ),
    Setting(
        "enrich_logs",
        "logging",
        False,
        _boolean,
        "OTELFIN_ENRICH_LOGS",
        "add the catalogue's message, retryable and http_status to error lines",
    ),
    Setting(
        "stdlib_bridge",
        "logging",
        True,
        _boolean,
        "OTELFIN_STDLIB_BRIDGE",
        "route stdlib logging records through otelfin's chain",
    ),
    Setting(
        "stdlib_error_code",
        "logging",
        None,
        _optional_text,
        None,
        "error code given to stdlib error records that carry none",
    ),
    Setting(
        "server_logs",
        "logging",
        True,
        _boolean,
        "OTELFIN_SERVER_LOGS",
        "route uvicorn's and gunicorn's own access/error lines through the JSON pipeline",
    ),
    Setting(
        "logs_exporter",
        "logging",
        (),
        _exporters("otlp"),
        "OTEL_LOGS_EXPORTER",
        "otlp: also send every log line as an OTLP log record (OTEL_EXPORTER_OTLP_[LOGS_]"
        "ENDPOINT, _PROTOCOL http/protobuf or grpc); none (default): JSON lines only",
        choices=("otlp", "none"),
    ),
    Setting(
        "log_lines",
        "logging",
        True,
        _boolean,
        "OTELFIN_LOG_LINES",
        "write the JSON lines (stdout or log_file); false with OTEL_LOGS_EXPORTER=otlp sends "
        "logs over OTLP only",
    ),
    Setting(
        "max_error_code_labels",
        "logging",
        100,
        _integer(1),
        None,
        "distinct code label values of the unregistered-codes counter",
    ),
    # --- metrics ------------------------------------------------------------------------------
    Setting(
        "metrics_port",
        "metrics",
        None,
        _port,
        "OTELFIN_METRICS_PORT",
        "serve Prometheus /metrics on this port",
    ),
    Setting(
        "metrics_addr",
        "metrics",
        "0.0.0.0",
        _optional_text,
        "OTELFIN_METRICS_ADDR",
        "bind address of the /metrics server",
    ),
    Setting(
        "metrics_registry",
        "metrics",
        None,
        _anything,
        None,
        "a prometheus_client CollectorRegistry (default: the global one)",
        code_only=True,
    ),
    Setting(
        "metrics_labels",
        "metrics",
        ("channel",),
        _names,
        "OTELFIN_METRICS_LABELS",
        "extra RED labels taken from span attributes (label policy applies)",
    ),
    Setting(
        "metrics_allow_labels",
        "metrics",
        (),
        _names,
        None,
        "reviewed extra label names the allow-list lacks",
    ),
    Setting(
        "metrics_slo",
        "metrics",
        DEFAULT_SLO,
        _positive_number(),
        "OTELFIN_METRICS_SLO",
        "latency SLO in seconds: a bucket bound sits exactly on it",
    ),
    Setting(
        "metrics_operation_slos",
        "metrics",
        (),
        _operation_slos,
        "OTELFIN_METRICS_OPERATION_SLOS",
        "SLO per operation or route (risk.score=0.01,POST /payments=0.25): each is a bucket bound",
    ),
    Setting(
        "metrics_p99",
        "metrics",
        None,
        _positive_number(allow_none=True),
        None,
        "expected P99 in seconds: buckets are dense around it",
    ),
    Setting(
        "metrics_timeouts",
        "metrics",
        None,
        _timeouts,
        "OTELFIN_METRICS_TIMEOUTS",
        "the service's client timeouts in seconds (1.5,2.5; 'round,1.5' keeps the round values; "
        "'none'): narrow buckets at each; default: the round values 0.1 s ... 60 s",
    ),
    Setting(
        "metrics_buckets",
        "metrics",
        None,
        _numbers,
        "OTELFIN_METRICS_BUCKETS",
        "explicit histogram bounds in seconds (instead of the design)",
    ),
    Setting(
        "metrics_max_series",
        "metrics",
        1000,
        _integer(1),
        "OTELFIN_METRICS_MAX_SERIES",
        "per-metric series cap; overflow folds into 'other'",
    ),
    Setting(
        "metrics_count_unsampled",
        "metrics",
        True,
        _boolean,
        "OTELFIN_METRICS_COUNT_UNSAMPLED",
        "record unsampled server/consumer/client spans (not exported) so metrics count them",
    ),
    Setting(
        "metrics_exporter",
        "metrics",
        (),
        _exporters("otlp", "prometheus"),
        "OTEL_METRICS_EXPORTER",
        "otlp: also push the registry's metrics (RED series, buckets, exemplars) over OTLP "
        "every metrics_export_interval; /metrics stays as metrics_port says",
        choices=("otlp", "prometheus", "none"),
    ),
    Setting(
        "metrics_export_interval",
        "metrics",
        60000,
        _integer(100),
        "OTEL_METRIC_EXPORT_INTERVAL",
        "milliseconds between OTLP metric pushes",
    ),
    Setting(
        "metrics_exemplars",
        "metrics",
        True,
        _boolean,
        None,
        "attach trace_id exemplars to histogram observations",
    ),
)

_BY_NAME = {setting.name: setting for setting in SETTINGS}


def by_name(name: str) -> Setting:
    """The row called ``name`` (KeyError when there is none)."""
    return _BY_NAME[name]


def default(name: str) -> Any:
    """The default of the row called ``name``."""
    return _BY_NAME[name].default


def env_value(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The environment variable's value, or None when unset or blank."""
    value = (os.environ if environ is None else environ).get(name)
    return value.strip() if value is not None and value.strip() else None


#: The variables that switch prometheus_client to multiprocess storage (either spelling).
PROMETHEUS_MULTIPROC_VARIABLES = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")


def prometheus_multiprocess(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks prometheus_client for multiprocess storage: the test
    ``prometheus_client.values`` makes when it is imported (set, even empty)."""
    env = os.environ if environ is None else environ
    return any(name in env for name in PROMETHEUS_MULTIPROC_VARIABLES)


def _unknown(names: Iterable[str], known: Iterable[str]) -> None:
    unknown = sorted(names)
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], list(known), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise TypeError(f"configure() got an unexpected keyword argument {unknown[0]!r}{hint}")


def resolve(
    given: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    *,
    problems: list[str] | None = None,
) -> dict[str, Any]:
    """Every row's value: environment, then ``given`` (None = not given), then default.

    Raises ``TypeError`` for a keyword no row has and ``ValueError`` naming the variable or
    argument of a bad value. With ``problems`` (a list), nothing raises: a bad value takes
    the row's default and its error is appended (zero-code falls back this way, so one typo
    never turns card masking off).
    """
    if problems is None:
        _unknown(set(given) - set(_BY_NAME), _BY_NAME)
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = env_value(setting.env, environ) if setting.env else None
        if raw is not None:
            where = setting.env
        else:
            raw = given.get(setting.name)
            where = f"{setting.name}"
        if raw is None:
            values[setting.name] = setting.default
            continue
        try:
            values[setting.name] = setting.parse(raw, str(where))
        except ValueError as exc:
            if problems is None:
                raise
            problems.append(f"{exc} (default {_default_text(setting)!r} used)")
            values[setting.name] = setting.default
    return values


def _default_text(setting: Setting) -> str:
    value = setting.default
    if value is None or value == ():
        return "(none)"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def markdown_table() -> str:
    """The settings table as markdown, made from :data:`SETTINGS` (the docs' settings page)."""
    lines = [
        "| argument | environment variable | default | part | meaning |",
        "|---|---|---|---|---|",
    ]
    for s in SETTINGS:
        env = f"`{s.env}`" if s.env else ("(code only)" if s.code_only else "")
        lines.append(f"| `{s.name}` | {env} | `{_default_text(s)}` | {s.pillar} | {s.doc} |")
    return "\n".join(lines) + "\n"
