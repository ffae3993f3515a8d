"""The transport table and the one lifecycle every row goes through.

A row names a library, the ``BaseInstrumentor`` that instruments it (an official
``opentelemetry-instrumentation-*`` class or one of otelfin's own fixes) and the extra that
installs it. Switching a transport on is the same for every row:

* the library is not installed: nothing happens;
* it is installed: a post-import hook (wrapt) instruments it when it is imported, which is at
  once when it already is, so import order never matters and ``configure()`` imports nothing
  the application does not use;
* the instrumentor is already active (the application or ``opentelemetry-instrument`` switched it
  on): otelfin leaves it alone and never switches it off.

Adding a library is a row here (and its extra in ``pyproject.toml``), not a module.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from otelfin import _internal
from otelfin.instrument.transports import _datastores

__all__ = ["Row", "TABLE", "TRANSPORTS", "install", "uninstall", "installed", "rows"]

_OWN = "otelfin.instrument.transports"


@dataclass(frozen=True)
class Row:
    """One instrumentor for one library, switched on by ``configure()`` when it is installed."""

    name: str
    """The transport name in ``configure(transports=[...])``; several rows may share it."""
    library: str
    """The import name whose presence (and import) switches the row on."""
    instrumentor: str
    """``module:Class`` of a ``BaseInstrumentor`` subclass."""
    extra: str
    """The otelfin extra that installs the instrumentor's package."""
    options: Callable[[], Mapping[str, Any]] | None = field(default=None, compare=False)
    """Keyword arguments (hooks, exclusions) for ``instrument()``, built when it runs."""

    @property
    def hint(self) -> str:
        """What to run when the instrumentor's package is missing."""
        return f"pip install 'otelfin[{self.extra}]'"

    def load(self) -> Any:
        """The instrumentor (a per-class singleton); ImportError carries the install hint."""
        module, _, cls = self.instrumentor.partition(":")
        try:
            return getattr(importlib.import_module(module), cls)()
        except ImportError as exc:
            raise ImportError(f"otelfin needs {module} for {self.library}: {self.hint}") from exc


def _asgi_options() -> Mapping[str, Any]:
    # The ASGI middleware's per-message "http send"/"http receive" INTERNAL spans are 2-4 extra
    # spans a request that no payment dashboard reads.
    return {"exclude_spans": ["receive", "send"]}


def _official(
    name: str,
    library: str,
    package: str,
    cls: str,
    extra: str,
    options: Callable[[], Mapping[str, Any]] | None = None,
) -> Row:
    return Row(name, library, f"opentelemetry.instrumentation.{package}:{cls}", extra, options)


_params = _datastores.parameter_options


#: Every instrumentor ``configure()`` can switch on, in order (a library's official
#: instrumentor comes before otelfin's fix on top of it; uninstall runs backwards).
TABLE: tuple[Row, ...] = (
    _official("requests", "requests", "requests", "RequestsInstrumentor", "http"),
    _official("httpx", "httpx", "httpx", "HTTPXClientInstrumentor", "http"),
    _official("urllib3", "urllib3", "urllib3", "URLLib3Instrumentor", "http"),
    _official("aiohttp", "aiohttp", "aiohttp_client", "AioHttpClientInstrumentor", "aiohttp"),
    # Before the official client rows, so its interceptor runs inside theirs (see the module).
    Row("grpc", "grpc", f"{_OWN}.grpc:GrpcTargetInstrumentor", "grpc"),
    _official("grpc", "grpc", "grpc", "GrpcInstrumentorClient", "grpc"),
    _official("grpc", "grpc", "grpc", "GrpcInstrumentorServer", "grpc"),
    _official("grpc", "grpc", "grpc", "GrpcAioInstrumentorClient", "grpc"),
    _official("grpc", "grpc", "grpc", "GrpcAioInstrumentorServer", "grpc"),
    _official("pika", "pika", "pika", "PikaInstrumentor", "amqp"),
    Row("pika", "pika", f"{_OWN}.pika:PikaPublishFixInstrumentor", "amqp"),
    _official("aio_pika", "aio_pika", "aio_pika", "AioPikaInstrumentor", "amqp"),
    Row("aio_pika", "aio_pika", f"{_OWN}.aio_pika:AioPikaIteratorInstrumentor", "amqp"),
    # Before the official row: its send wrapper must enclose this one (see the module).
    Row("kafka", "kafka", f"{_OWN}.kafka:KafkaProducerPeerInstrumentor", "kafka"),
    _official("kafka", "kafka", "kafka", "KafkaInstrumentor", "kafka"),
    _official("kafka", "confluent_kafka", "confluent_kafka", "ConfluentKafkaInstrumentor", "kafka"),
    Row("kafka", "kafka", f"{_OWN}.kafka:KafkaConsumerProcessInstrumentor", "kafka"),
    _official("kafka", "aiokafka", "aiokafka", "AIOKafkaInstrumentor", "kafka"),
    Row("nats", "nats", f"{_OWN}.nats:NatsInstrumentor", "nats"),
    # Data stores: statements are recorded and scrubbed at export; parameters only on opt-in.
    _official("postgres", "psycopg", "psycopg", "PsycopgInstrumentor", "postgres", _params),
    _official("postgres", "psycopg2", "psycopg2", "Psycopg2Instrumentor", "postgres", _params),
    _official("postgres", "asyncpg", "asyncpg", "AsyncPGInstrumentor", "postgres"),
    Row("postgres", "asyncpg", f"{_OWN}._datastores:AsyncpgParametersInstrumentor", "postgres"),
    _official("sqlalchemy", "sqlalchemy", "sqlalchemy", "SQLAlchemyInstrumentor", "sqlalchemy"),
    Row(
        "sqlalchemy", "sqlalchemy", f"{_OWN}.sqlalchemy:SqlAlchemyOneSpanInstrumentor", "sqlalchemy"
    ),
    _official("sqlite3", "sqlite3", "sqlite3", "SQLite3Instrumentor", "sqlite3"),
    Row("sqlite3", "sqlite3", f"{_OWN}.sqlite3:Sqlite3ShortcutsInstrumentor", "sqlite3"),
    _official("redis", "redis", "redis", "RedisInstrumentor", "redis"),
    _official("celery", "celery", "celery", "CeleryInstrumentor", "celery"),
    Row("celery", "celery", f"{_OWN}.celery:CeleryFixInstrumentor", "celery"),
    # Web frameworks: the official instrumentations, applied per app (see ``web``).
    Row("fastapi", "fastapi", f"{_OWN}.web:FastAPIAppsInstrumentor", "fastapi", _asgi_options),
    Row("fastapi", "starlette", f"{_OWN}.web:StarletteErrorsInstrumentor", "fastapi"),
    Row("starlette", "starlette", f"{_OWN}.web:StarletteAppsInstrumentor", "fastapi"),
    Row("starlette", "starlette", f"{_OWN}.web:StarletteErrorsInstrumentor", "fastapi"),
    Row("flask", "flask", f"{_OWN}.web:FlaskAppsInstrumentor", "flask"),
    Row("django", "django", f"{_OWN}.web:DjangoMiddlewareInstrumentor", "django"),
)


def _names(table: Iterable[Row]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(row.name for row in table))


#: Transport names switched on by ``configure()``, in this order.
TRANSPORTS: tuple[str, ...] = _names(TABLE)


def rows(name: str) -> tuple[Row, ...]:
    """The rows of one transport."""
    return tuple(row for row in TABLE if row.name == name)


def _installed_library(name: str) -> bool:
    try:
        return name in sys.modules or importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


class _Switch:
    """Which rows otelfin switched on (or will, when their library is imported).

    ``wanted`` rows are instrumented by their post-import hook; ``ours`` holds the instrumentors
    otelfin itself switched on, the only ones :func:`uninstall` switches off; ``settled`` rows
    were looked at (ours, the application's, or failed). wrapt hooks cannot be removed, so the
    hook of a row that is no longer wanted does nothing.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.wanted: dict[Row, None] = {}
        self.settled: set[Row] = set()
        self.ours: dict[Row, Any] = {}
        self.hooked: set[Row] = set()


_switch = _Switch()


def _loading(module: str) -> bool:
    """True while ``module`` is being imported (in ``sys.modules`` but not yet executed)."""
    spec = getattr(sys.modules.get(module), "__spec__", None)
    return bool(getattr(spec, "_initializing", False))


def _instrument(row: Row) -> None:
    """Switch ``row`` on unless something else already did (may run in the host's import).

    The lock is not held while instrumenting: instrumenting imports modules, and an import in
    another thread may be waiting for this lock in its own post-import hook.
    """
    if _loading(row.instrumentor.partition(":")[0]):
        # The instrumentation module itself is importing the library (the application imports
        # it to instrument by hand): its class is not defined yet, and the application is
        # about to use it. Left to the application; the next install() looks again.
        return
    with _switch.lock:
        if row not in _switch.wanted or row in _switch.settled:
            return
        _switch.settled.add(row)
    try:
        # The library was imported for the host; its own import-time deprecation notices are
        # not the host's to see (under "warnings as errors" they would abort that import).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            instrumentor = row.load()
            if instrumentor.is_instrumented_by_opentelemetry:
                return  # the application's: never ours to undo
            options = dict(row.options()) if row.options is not None else {}
            instrumentor.instrument(**options)
    except Exception as exc:
        _internal.report(f"transports.install[{row.name}:{row.library}]", exc)
        return
    if instrumentor.is_instrumented_by_opentelemetry:  # False: library version out of range
        with _switch.lock:
            _switch.ours[row] = instrumentor


def _hook(row: Row) -> Callable[[ModuleType], None]:
    def on_import(module: ModuleType) -> None:
        _instrument(row)

    return on_import


def install(names: Iterable[str] | None = None) -> list[str]:
    """Instrument the given transports (default: all) whose library is installed.

    Returns the names now switched on. Unknown names raise ``ValueError``; a row that fails
    to instrument is reported once and skipped.
    """
    import wrapt

    wanted = TRANSPORTS if names is None else tuple(names)
    unknown = [n for n in wanted if n not in TRANSPORTS]
    if unknown:
        raise ValueError(f"unknown transports {unknown}: expected some of {', '.join(TRANSPORTS)}")
    todo: list[tuple[Row, bool]] = []
    # Several rows share a library (five for grpc): each is looked up once.
    present: dict[str, bool] = {}
    with _switch.lock:
        for row in TABLE:
            if row.name not in wanted or row in _switch.wanted:
                continue
            if row.library not in present:
                present[row.library] = _installed_library(row.library)
            if not present[row.library]:
                continue
            _switch.wanted[row] = None
            _switch.settled.discard(row)
            todo.append((row, row not in _switch.hooked))
            _switch.hooked.add(row)
    for row, first in todo:
        if first:
            wrapt.register_post_import_hook(_hook(row), row.library)  # runs now if imported
        elif row.library in sys.modules:
            _instrument(row)
    return installed()


def uninstall() -> None:
    """Undo :func:`install`: switch off what otelfin switched on, forget pending rows."""
    with _switch.lock:
        _switch.wanted.clear()
        _switch.settled.clear()
        ours, _switch.ours = _switch.ours, {}
    for row, instrumentor in reversed(list(ours.items())):
        try:
            instrumentor.uninstrument()
        except Exception as exc:
            _internal.report(f"transports.uninstall[{row.name}:{row.library}]", exc)


def installed() -> list[str]:
    """The transports otelfin has switched on (instrumented, or will be at the library's import).

    A transport the application instrumented itself is not listed: it is not otelfin's.
    """
    with _switch.lock:
        active = [r for r in _switch.wanted if r in _switch.ours or r not in _switch.settled]
        return list(_names(active))
