"""The house drawn as a test: floors, one direction of imports, no loop, no private reaches.

Floors, top to bottom: the face (``otelfin``, ``otelfin.testing``, the zero-code entry points)
-> config (``configure()`` and the span export pipeline it builds) -> the pillars
(``instrument``, ``propagation``, ``metrics``, ``logging``) -> core (the seam types, settings
table, catalogue, scrubber, containment). Tools (``otelfin.tools``, ``otelfin.cli``) stand
beside the house: they may use any public name, and nothing of the runtime imports them. An
AST walk over ``otelfin/`` checks every import statement, wherever it sits (functions and
``TYPE_CHECKING`` blocks included: a late import is still an arrow).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

import otelfin

ROOT = Path(otelfin.__file__).parent

#: Floor of each module, by longest matching prefix; the order is the allowed direction.
FLOORS: dict[str, tuple[str, ...]] = {
    "face": ("otelfin", "otelfin.testing", "otelfin._zerocode"),
    "config": (
        "otelfin._config",
        "otelfin._lifecycle",
        "otelfin._exporters",
        "otelfin._sampling",
        "otelfin._tail",
    ),
    "pillars": (
        "otelfin.instrument",
        "otelfin.propagation",
        "otelfin.metrics",
        "otelfin.logging",
        "otelfin.audit",
    ),
    "core": (
        "otelfin.pillar",
        "otelfin.catalogue",
        "otelfin._catalogue_yaml",
        "otelfin.scrub",
        "otelfin._settings",
        "otelfin._internal",
        "otelfin._errors",
        "otelfin._registries",
        "otelfin._version",
        "otelfin._keep",
        "otelfin._otlp",
        "otelfin._peer",
        "otelfin._outcome",
        "otelfin._burst",
    ),
    "tools": ("otelfin.tools", "otelfin.cli"),
}
ORDER = ("face", "config", "pillars", "core")
#: Private top-level modules every floor may use (they sit at the bottom).
CORE_PRIVATE = frozenset(
    {"otelfin._settings", "otelfin._internal", "otelfin._errors", "otelfin._registries",
     "otelfin._catalogue_yaml",
     "otelfin._version", "otelfin._keep", "otelfin._otlp",
     "otelfin._peer", "otelfin._outcome", "otelfin._burst"}
)  # fmt: skip
#: The only arrows from one pillar to another, each with its reason.
ACROSS_PILLARS = {
    ("otelfin.instrument", "otelfin.propagation"): "transport instrumentors use the carriers",
    ("otelfin.logging", "otelfin.metrics.names"): "metric names are one vocabulary",
    ("otelfin.instrument", "otelfin.logging"): "a web error is one log line (get_logger)",
}
#: Runtime modules that may name the tools: compatibility aliases resolved only on use.
TOOL_BRIDGES = {
    "otelfin.logging": "validate_path & co. resolved by a module __getattr__",
    "otelfin.metrics.offline": "the old name of otelfin.tools.metrics, imported only by name",
}
#: Private attributes of other libraries that must never be touched (public API instead).
FORBIDDEN_PRIVATE = frozenset({"_names_to_collectors", "ValueClass"})
#: Private parts of other libraries otelfin still uses, each because no public API exists.
ALLOWED_PRIVATE: dict[tuple[str, str], str] = {
    ("otelfin._zerocode", "opentelemetry.sdk._configuration"): "the SDK's configurator base",
    ("otelfin._zerocode", "_BaseConfigurator"): "the SDK's configurator entry point base class",
    ("otelfin.testing", "opentelemetry.util._once"): "resetting the API's set-once globals",
    ("otelfin.propagation._propagator", "_BAGGAGE_KEY"): "baggage context key, no getter",
    ("otelfin.propagation._propagator", "_SPAN_KEY"): "span context key for a fast path",
    ("otelfin.instrument._fastctx", "_RUNTIME_CONTEXT"): "the context fast path (measured)",
    ("otelfin.instrument._fastctx", "_SPAN_KEY"): "the context fast path (measured)",
    ("otelfin.instrument._fastctx", "_current_context"): "the context fast path (measured)",
    ("otelfin.instrument._main", "_getframe"): "sys._getframe: CPython's own frame access",
    ("otelfin.instrument.transports.pika", "_impl"): "pika's blocking channel internals",
    ("otelfin.instrument.transports.pika", "_original_function"): "unwrap contrib's wrapper",
    ("otelfin.instrument.transports.pika", "_queue_consumer_generator"): "pika consume()",
    ("otelfin.instrument.transports.sqlite3", "_self_db_api_integration"): "contrib dbapi",
    ("otelfin.instrument.transports.web", "_is_instrumented_by_opentelemetry"): "contrib flag",
    ("otelfin.instrument.transports.web", "_got_first_request"): "Flask's set-up guard",
    ("otelfin.instrument.transports.nats", "_sub"): "nats-py message's subscription",
    ("otelfin.instrument.transports.aio_pika", "_amqp_queue"): "aio-pika iterator's queue",
    ("otelfin.instrument.transports._table", "_initializing"): "a module still importing",
    ("otelfin.scrub._spans", "span"): "the SDK's ending hook hands a read-only span (below)",
    # OpenTelemetry Python's logs signal still lives under underscore names (its documented
    # API and SDK, and the official exporters' modules); there is no other path to them.
    ("otelfin.logging._otlp", "opentelemetry.sdk._logs.export"): "the logs SDK's results",
    ("otelfin.logging._otlp", "opentelemetry._logs"): "the logs API's LogRecord",
    ("otelfin.logging._otlp", "opentelemetry.sdk._logs"): "the logs SDK's ReadableLogRecord",
    ("otelfin._peer", "span"): "the ending hook's frozen attributes: one key added (peer)",
    ("otelfin._outcome", "span"): "the ending hook: outcome set on the frozen span, no closure",
    ("otelfin.instrument._spanwrite", "span"): "a decline's writes, SDK checks skipped (measured)",
    ("otelfin._outcome", "_dict"): "BoundedAttributes' dict: public reads go through Mapping",
    ("otelfin._outcome", "_immutable"): "BoundedAttributes' freeze flag, lifted for our keys",
    # The lean server span reads the official ASGI middleware's configuration (pinned 0.66b1)
    # to take the fast path only where that middleware would make the same span.
    ("otelfin.instrument.transports._server", "_StabilityMode"): "semconv mode of the official",
    ("otelfin.instrument.transports._server", "opentelemetry.instrumentation._semconv"): "(same)",
    ("otelfin.instrument.transports._server", "_sem_conv_opt_in_mode"): "the official's mode",
    # The lean span remembers the official FastAPI span details for static routes: it
    # recognises that function by identity and flattens routes with the official's own helper.
    ("otelfin.instrument.transports._routes", "_get_default_span_details"): "identity only",
    ("otelfin.instrument.transports._routes", "_flatten_routes"): "the official's own walk",
    ("otelfin._exporters._sliced", "_client"): "OTLP/HTTP client: posts bytes encoded in slices",
    ("otelfin._exporters._sliced", "_shutdown"): "the OTLP/HTTP exporter's own shutdown flag",
    ("otelfin._exporters._wire", "span"): "ReadableSpan's fields: its properties copy (measured)",
    ("otelfin._exporters._wire", "_dict"): "BoundedAttributes' dict: Mapping reads cost ~0.3 us",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def floor_of(module: str) -> str | None:
    """The floor a dotted otelfin module lives on (longest prefix wins), or None."""
    best, found = -1, None
    for floor, prefixes in FLOORS.items():
        for prefix in prefixes:
            hit = module == prefix or (prefix != "otelfin" and module.startswith(prefix + "."))
            if hit and len(prefix) > best:
                best, found = len(prefix), floor
    return found


def _owner(module: str) -> str:
    """``otelfin.x`` for any module under it (``otelfin`` for the face itself)."""
    return ".".join(module.split(".")[:2])


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def imports(
    modules: Iterable[tuple[str, str]],
) -> tuple[dict[str, list[tuple[str, int]]], dict[str, ast.Module]]:
    """Every otelfin module each module imports (``(target, line)``), and the parsed trees.

    ``from a import b`` names the module ``a.b`` when that is a module, else ``a``.
    """
    trees = {module: ast.parse(source) for module, source in modules}
    known = set(trees)
    edges: dict[str, list[tuple[str, int]]] = {}
    for module, tree in trees.items():
        found = edges.setdefault(module, [])
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    targets.append(full if full in known else node.module)
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            for target in targets:
                if target.split(".")[0] == "otelfin" and target != module:
                    found.append((target, node.lineno))
    return edges, trees


def cycles(edges: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """One loop per strongly connected group of modules, as ``[a, b, ..., a]``."""
    graph = {m: sorted({t for t, _ in targets if t in edges}) for m, targets in edges.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan; otelfin is small enough for recursion
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    loops = []
    for group in groups:  # a shortest path back to the start, for a readable message
        members, start = set(group), min(group)
        paths = {start: [start]}
        queue = [start]
        while queue:
            node = queue.pop(0)
            for nxt in graph[node]:
                if nxt == start:
                    loops.append([*paths[node], start])
                    queue = []
                    break
                if nxt in members and nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    queue.append(nxt)
    return sorted(loops)


def arrow_violations(edges: dict[str, list[tuple[str, int]]]) -> list[str]:
    """``module:line: reason`` for every import that goes the wrong way or reaches a private."""
    found: list[str] = []
    for module, targets in edges.items():
        targets = list(dict.fromkeys(targets))  # `from a import b, c` is one arrow
        mine = floor_of(module)
        if mine is None:
            found.append(f"{module}: on no floor (add it to FLOORS in tests/test_architecture.py)")
            continue
        for target, line in targets:
            theirs = floor_of(target)
            where = f"{module}:{line}: imports {target}"
            if theirs is None:
                continue  # reported as the target's own finding
            if theirs == "tools":
                if mine != "tools" and module not in TOOL_BRIDGES:
                    found.append(f"{where} (the runtime never imports the tools)")
                continue
            if mine != "tools" and ORDER.index(theirs) < ORDER.index(mine):
                found.append(f"{where} (up from {mine} to {theirs})")
                continue
            across = mine == theirs == "pillars" and _owner(module) != _owner(target)
            if across and not any(
                _under(module, a) and _under(target, b) for a, b in ACROSS_PILLARS
            ):
                found.append(f"{where} (one pillar into another)")
                continue
            if _owner(module) == _owner(target) or target in CORE_PRIVATE:
                continue
            if mine == theirs == "config":
                continue  # config's modules are one floor: configure() and what it builds
            private = any(_private(s) for s in target.split(".")[1:])
            config_private = theirs == "config" and mine == "face"
            if private and not config_private:
                found.append(f"{where} (a private module of {_owner(target)})")
    return found


def _reaches(node: ast.AST) -> Iterable[tuple[str, int]]:
    """(private name of another library, line) reached by ``node``."""
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        if node.module.split(".")[0] != "otelfin":
            if any(_private(s) for s in node.module.split(".")):
                yield node.module, node.lineno
            for alias in node.names:
                if _private(alias.name) or alias.name in FORBIDDEN_PRIVATE:
                    yield alias.name, node.lineno
    elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_PRIVATE:
        yield node.attr, node.lineno
    elif isinstance(node, ast.Attribute) and _private(node.attr):
        base = node.value
        if isinstance(base, ast.Name) and base.id == "span":
            yield "span", node.lineno  # an SDK span's private field
    elif (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("getattr", "setattr", "hasattr")
        and len(node.args) > 1
        and isinstance(node.args[1], ast.Constant)
        and isinstance(node.args[1].value, str)
        and (_private(node.args[1].value) or node.args[1].value in FORBIDDEN_PRIVATE)
    ):
        yield node.args[1].value, node.lineno


def _own_names(trees: dict[str, ast.Module]) -> set[str]:
    """Every name otelfin itself defines or assigns (its own ``_x`` attributes are fine)."""
    names: set[str] = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
    return names


def private_reaches(trees: dict[str, ast.Module]) -> list[str]:
    """``module:line: name`` for private parts of other libraries not in ALLOWED_PRIVATE."""
    own = _own_names(trees) - FORBIDDEN_PRIVATE
    found: list[str] = []
    for module, tree in trees.items():
        for node in ast.walk(tree):
            for name, line in _reaches(node):
                if name in own and name != "span":
                    continue
                if (module, name) in ALLOWED_PRIVATE and name not in FORBIDDEN_PRIVATE:
                    continue
                found.append(f"{module}:{line}: {name}")
    # An ordinary attribute read of another library's private name (``registry._x``).
    for module, tree in trees.items():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and _private(node.attr)
                and node.attr not in own
                and not (isinstance(node.value, ast.Name) and node.value.id == "span")
                and (module, node.attr) not in ALLOWED_PRIVATE
            ):
                found.append(f"{module}:{node.lineno}: {node.attr}")
    return sorted(set(found))


#: ``global`` statements still allowed, each with its reason (none should be: use a _State).
ALLOWED_GLOBAL: dict[tuple[str, str], str] = {}


def global_statements(modules: Iterable[tuple[str, str]]) -> list[str]:
    """``module:line: what`` for state kept outside the one idiom in a runtime module: every
    ``global`` statement, a ``_State`` class without ``__slots__``, and a ``_State`` class used
    as a namespace (``_State.x = ...`` instead of an instance).

    State a module keeps lives in one ``_state = _State()`` instance (a small class with
    ``__slots__``), set by the pillar's ``install_pillar`` and read from there; the tools,
    which run once and exit, stand apart.
    """
    found: list[str] = []
    for module, source in modules:
        if floor_of(module) == "tools":
            continue
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Global):
                names = [n for n in node.names if (module, n) not in ALLOWED_GLOBAL]
                if names:
                    found.append(f"{module}:{node.lineno}: global {', '.join(names)}")
            elif isinstance(node, ast.ClassDef) and node.name == "_State":
                if not any(
                    isinstance(item, ast.Assign)
                    and any(getattr(t, "id", None) == "__slots__" for t in item.targets)
                    for item in node.body
                ):
                    found.append(f"{module}:{node.lineno}: _State without __slots__")
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and getattr(node.value, "id", None) == "_State"
            ):
                found.append(f"{module}:{node.lineno}: _State.{node.attr} (class as namespace)")
    return sorted(found, key=lambda line: (line.split(":")[0], int(line.split(":")[1])))


def _package() -> list[tuple[str, str]]:
    return [(_module_name(p), p.read_text("utf-8")) for p in sorted(ROOT.rglob("*.py"))]


def test_no_import_loop_inside_otelfin() -> None:
    """No chain of imports (late and TYPE_CHECKING ones included) leads back to its start."""
    edges, _ = imports(_package())
    assert cycles(edges) == []


def test_imports_go_one_way() -> None:
    """face -> config -> pillars -> core; tools beside; no private module of another owner."""
    edges, _ = imports(_package())
    assert arrow_violations(edges) == []


def test_no_private_parts_of_other_libraries() -> None:
    """prometheus_client's registry internals, ValueClass and SDK span fields stay untouched,
    except where ALLOWED_PRIVATE says why no public API exists."""
    _, trees = imports(_package())
    assert private_reaches(trees) == []


def _edges(*modules: tuple[str, str]) -> dict[str, list[tuple[str, int]]]:
    return imports(modules)[0]


def test_checker_catches_the_old_loops() -> None:
    """The two loops of the old house are found (the late import that closed each included)."""
    config_loop = _edges(
        ("otelfin._config", "from otelfin import _settings\n"),
        ("otelfin._settings", "from otelfin.catalogue import LEVEL_NAMES\n"),
        ("otelfin.catalogue", "def current():\n    from otelfin._config import x\n"),
    )
    assert cycles(config_loop) == [
        ["otelfin._config", "otelfin._settings", "otelfin.catalogue", "otelfin._config"]
    ]
    scrub_loop = _edges(
        ("otelfin._internal", "def report():\n    from otelfin.scrub import scrub_text\n"),
        ("otelfin.scrub", "from otelfin.scrub import _spans\n"),
        ("otelfin.scrub._spans", "from otelfin import _internal\n"),
    )
    assert cycles(scrub_loop) == [
        ["otelfin._internal", "otelfin.scrub", "otelfin.scrub._spans", "otelfin._internal"]
    ]


def test_checker_catches_the_old_reversed_arrows() -> None:
    """metrics calling into instrument, the face importing a private pillar module, pillars
    importing Config from the face, tools reaching into a pillar's private module, and the
    runtime importing the tools are each reported."""
    edges = _edges(
        ("otelfin", "from otelfin.instrument._traced import traced\n"),
        ("otelfin.instrument", ""),
        ("otelfin.instrument._traced", ""),
        ("otelfin.metrics", "from otelfin import instrument\n"),
        ("otelfin.logging", "if TYPE_CHECKING:\n    from otelfin import Config\n"),
        ("otelfin.tools.metrics._rules", "from otelfin.metrics._red import DURATION_METRIC\n"),
        ("otelfin.metrics._red", ""),
        ("otelfin.scrub._probe", "from otelfin.tools.logs import validate_path\n"),
        ("otelfin.tools.logs", ""),
        ("otelfin.newthing", ""),
    )
    assert arrow_violations(edges) == [
        "otelfin:1: imports otelfin.instrument._traced (a private module of otelfin.instrument)",
        "otelfin.metrics:1: imports otelfin.instrument (one pillar into another)",
        "otelfin.logging:2: imports otelfin (up from pillars to face)",
        "otelfin.tools.metrics._rules:1: imports otelfin.metrics._red "
        "(a private module of otelfin.metrics)",
        "otelfin.scrub._probe:1: imports otelfin.tools.logs (the runtime never imports the tools)",
        "otelfin.newthing: on no floor (add it to FLOORS in tests/test_architecture.py)",
    ]


def test_checker_catches_private_reaches() -> None:
    """_names_to_collectors, ValueClass and an SDK span's fields are found; otelfin's own
    underscore attributes are not."""
    _, trees = imports(
        [
            (
                "otelfin.metrics._probe",
                "getattr(registry, '_names_to_collectors', {})\n"
                "from prometheus_client import values\n"
                "values.ValueClass\n"
                "span._attributes\n"
                "registry._collector_to_names\n"
                "class Mine:\n    def __init__(self):\n        self._own = 1\n"
                "other._own\n",
            )
        ]
    )
    assert private_reaches(trees) == [
        "otelfin.metrics._probe:1: _names_to_collectors",
        "otelfin.metrics._probe:3: ValueClass",
        "otelfin.metrics._probe:4: span",
        "otelfin.metrics._probe:5: _collector_to_names",
    ]


def test_runtime_keeps_its_state_in_one_idiom() -> None:
    """No runtime module rebinds a module global (``global``): its state is one ``_State``."""
    assert global_statements(_package()) == []


def test_checker_catches_a_global_statement() -> None:
    """A ``global`` statement at any depth, a ``_State`` without ``__slots__`` and a ``_State``
    used as a namespace are found in a runtime module, not in the tools."""
    source = (
        "_current = None\n"
        "def configure(options):\n"
        "    global _current\n"
        "    _current = options\n"
        "class Holder:\n"
        "    def set(self):\n"
        "        def inner():\n"
        "            global _a, _b\n"
        "class _State:\n"
        "    installed = None\n"
        "def install():\n"
        "    _State.installed = 1\n"
    )
    assert global_statements(
        [("otelfin.scrub._options", source), ("otelfin.tools.logs._probe", source)]
    ) == [
        "otelfin.scrub._options:3: global _current",
        "otelfin.scrub._options:8: global _a, _b",
        "otelfin.scrub._options:9: _State without __slots__",
        "otelfin.scrub._options:12: _State.installed (class as namespace)",
    ]


def test_settings_reference_is_generated_from_the_settings_table() -> None:
    """The docs' settings page is rendered from otelfin/_settings.py at build time, no copy."""
    page = (ROOT.parent / "docs" / "reference" / "settings.md").read_text("utf-8")
    assert "<!-- generated: settings -->" in page
    assert "| `service_name` |" not in page  # a hand-made copy would drift


def test_every_setting_has_a_doc_and_a_unique_variable() -> None:
    """Each row is documented and no two rows read the same environment variable."""
    from otelfin import _settings

    envs = [s.env for s in _settings.SETTINGS if s.env]
    assert len(envs) == len(set(envs))
    assert all(s.doc for s in _settings.SETTINGS)


def test_shipped_schema_uses_the_shared_definitions() -> None:
    """schema.json's level enum and error-code pattern are the catalogue's, not a third copy."""
    from otelfin import catalogue
    from otelfin.logging import schema

    properties = schema()["properties"]
    assert tuple(properties["level"]["enum"]) == catalogue.LEVEL_NAMES
    assert properties["error_code"]["pattern"] == f"^{catalogue.CODE_PATTERN.pattern}$"


def test_runtime_never_loads_the_offline_tools() -> None:
    """Importing otelfin and its pillars and running configure() loads nothing of otelfin.tools,
    while the names kept for compatibility still resolve to the tools'."""
    import subprocess
    import sys

    code = (
        "import sys, otelfin, otelfin.instrument, otelfin.propagation, otelfin.metrics, "
        "otelfin.logging, otelfin.scrub, otelfin.catalogue\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter\n"
        "otelfin.configure(service_name='probe', span_exporter=InMemorySpanExporter())\n"
        "otelfin.get_logger().info('probe')\n"
        "otelfin.shutdown()\n"
        "print(sorted(m for m in sys.modules if m.startswith('otelfin.tools')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"

    import otelfin.logging
    import otelfin.metrics.offline
    from otelfin.tools import logs, metrics

    assert otelfin.logging.validate_path is logs.validate_path
    assert otelfin.logging.filter_lines is logs.filter_lines
    assert otelfin.logging.write_metrics_file is logs.write_metrics_file
    assert otelfin.metrics.offline.attribute is metrics.attribute
    assert set(otelfin.metrics.offline.__all__) == set(metrics.__all__)


def test_runtime_reads_the_environment_only_through_the_settings_table() -> None:
    """No runtime module but otelfin._settings touches os.environ or os.getenv (the tools,
    which set up their child processes' environment, stand apart)."""
    found = []
    for module, source in _package():
        if module == "otelfin._settings" or floor_of(module) == "tools":
            continue
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
                found.append(f"{module}:{node.lineno}: os.{node.attr}")
            elif isinstance(node, ast.ImportFrom) and node.module == "os":
                found += [f"{module}:{node.lineno}: from os import {a.name}" for a in node.names]
    assert found == []


def test_config_fields_are_rows_of_the_settings_table() -> None:
    """Config's fields are configure()'s keywords and rows of the table, with the rows'
    defaults; choice rows take their choices from their parser."""
    import dataclasses
    import inspect

    from otelfin import _settings
    from otelfin.pillar import FIELDS, Config

    keywords = set(inspect.signature(otelfin.configure).parameters)
    keywords -= {"span_exporter", "tracer_provider", "more"}
    assert keywords == {*FIELDS, "catalogue"}
    for f in dataclasses.fields(Config):
        if f.name in FIELDS and f.name not in ("service_name", "traces_exporter"):
            assert f.default == _settings.by_name(f.name).default, f.name
    assert _settings.by_name("error_code_policy").choices == ("tag", "drop", "raise")
    assert _settings.by_name("log_level").choices == _settings.LEVEL_NAMES
    with pytest.raises(ValueError, match="must be one of tag, drop, raise"):
        _settings.resolve({"error_code_policy": "keep"}, environ={})


def test_every_otelfin_metric_lands_on_the_registry_passed() -> None:
    """With metrics_registry=, otelfin's series (RED, pipeline health, containment, overflow,
    unregistered codes) are all in that registry and none in the global one."""
    from prometheus_client import REGISTRY, CollectorRegistry

    from otelfin.metrics import overflow_counter
    from otelfin.testing import configured_for_test

    def otelfin_names(registry: CollectorRegistry) -> set[str]:
        return {m.name for m in registry.collect() if m.name.startswith("otelfin_")}

    before = otelfin_names(REGISTRY)
    registry = CollectorRegistry()
    with configured_for_test(metrics_registry=registry, error_code_policy="tag"):

        @otelfin.traced()
        def pay() -> None:
            return None

        pay()
        otelfin.get_logger().error("payment_failed", error_code="ZZZ-999")
        overflow_counter(registry).labels(metric="probe").inc()
        names = otelfin_names(registry)
        assert otelfin_names(REGISTRY) == before
    expected = {
        "otelfin_request_duration_seconds",
        "otelfin_requests",
        "otelfin_spans_dropped",
        "otelfin_span_export_failures",
        "otelfin_internal_errors",
        "otelfin_metric_overflow",
        "otelfin_unregistered_error_codes",
    }
    assert expected <= names, expected - names
