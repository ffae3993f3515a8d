"""The pillars meet through public seams: an AST walk over otelfin/ keeps it that way."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import otelfin

ROOT = Path(otelfin.__file__).parent
PILLARS = frozenset({"instrument", "propagation", "metrics", "logging", "scrub", "cli"})
# Top-level modules every part of otelfin may use: containment, errors, the settings table
# and the configure()/pillar seam. Everything else with an underscore belongs to its owner.
SHARED = frozenset({"_internal", "_errors", "_settings", "_pillar"})


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _owner(module: str) -> str:
    """The pillar (or top-level module) a dotted otelfin module belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "otelfin"


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def violations(modules: Iterable[tuple[str, str]]) -> list[str]:
    """``module: reason`` for every seam broken in ``(module name, source)`` pairs."""
    found: list[str] = []
    for module, source in modules:
        mine = _owner(module)
        tree = ast.parse(source)
        config_names: set[str] = set()
        for node in ast.walk(tree):
            imported: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported = [f"{node.module}.{alias.name}" for alias in node.names]
                if node.module == "otelfin":
                    config_names |= {a.asname or a.name for a in node.names if a.name == "_config"}
            elif isinstance(node, ast.Import):
                imported = [alias.name for alias in node.names]
            for full in imported:
                segments = full.split(".")
                if segments[0] != "otelfin" or len(segments) < 2:
                    continue
                owner = segments[1]
                if mine not in PILLARS or owner == mine or owner in SHARED:
                    continue
                if owner not in PILLARS and owner != "_config":
                    continue  # a top-level helper module (export, demo, trace files)
                if any(_private(s) for s in segments[1:]):
                    found.append(f"{module}:{node.lineno}: imports {full}")
        if module == "otelfin._config":
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in config_names
                and _private(node.attr)
            ):
                found.append(f"{module}:{node.lineno}: reads _config.{node.attr}")
    return found


def _package() -> list[tuple[str, str]]:
    return [(_module_name(p), p.read_text("utf-8")) for p in sorted(ROOT.rglob("*.py"))]


def test_pillars_import_only_each_others_public_names() -> None:
    """No pillar imports another pillar's (or config's) underscore module or name."""
    assert violations(_package()) == []


def test_checker_catches_broken_seams() -> None:
    """The walk sees a cross-pillar underscore import and a read of config's state."""
    source = (
        "from otelfin.metrics._red import CallRecorder\n"
        "from otelfin import _config\n"
        "_config._state.provider\n"
        "from otelfin.logging import _pipeline\n"
    )
    found = violations([("otelfin.instrument._probe", source)])
    assert found == [
        "otelfin.instrument._probe:1: imports otelfin.metrics._red.CallRecorder",
        "otelfin.instrument._probe:2: imports otelfin._config",
        "otelfin.instrument._probe:4: imports otelfin.logging._pipeline",
        "otelfin.instrument._probe:3: reads _config._state",
    ]
    assert violations([("otelfin.logging._probe", "from otelfin.logging import _pipeline")]) == []


def test_readme_settings_table_is_the_settings_table() -> None:
    """The README's settings table is generated from otelfin/_settings.py and matches it."""
    from otelfin import _settings

    readme = (ROOT.parent / "README.md").read_text("utf-8")
    begin, end = "<!-- settings:begin -->\n", "<!-- settings:end -->"
    table = readme[readme.index(begin) + len(begin) : readme.index(end)]
    assert table == _settings.markdown_table()


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
