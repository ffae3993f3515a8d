"""pyproject pins the OpenTelemetry family coherently, so every pip resolves it in one pass."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the dev venv runs 3.11+
    tomllib = pytest.importorskip("tomli")


def _requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs.extend(r for r in extra if not r.startswith("otelfin["))
    return reqs


def test_opentelemetry_family_pinned_to_one_release() -> None:
    """Every opentelemetry-* requirement is an exact pin; SDK-line and contrib-line agree."""
    sdk_line: set[str] = set()
    contrib_line: set[str] = set()
    for req in _requirements():
        name = re.split(r"[=<>~!\[ ;]", req, maxsplit=1)[0]
        if not name.startswith("opentelemetry-"):
            continue
        match = re.fullmatch(rf"{re.escape(name)}==(\d+\.\d+(?:\.\d+|b\d+))", req)
        assert match, f"{req!r}: OpenTelemetry packages move as one release; pin with =="
        (contrib_line if "b" in match.group(1) else sdk_line).add(match.group(1))
    assert len(sdk_line) == 1, f"SDK-line pins disagree: {sorted(sdk_line)}"
    assert len(contrib_line) == 1, f"contrib-line pins disagree: {sorted(contrib_line)}"


def test_every_other_dependency_has_floor_and_cap() -> None:
    """Runtime dependencies outside OpenTelemetry carry a floor and a major-version cap."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = list(project["dependencies"])
    for name, extra in project["optional-dependencies"].items():
        if name != "dev":
            runtime.extend(r for r in extra if not r.startswith("otelfin["))
    for req in runtime:
        # grafana-foundation-sdk stamps each build with an epoch (1769699998!10.1.0): a
        # version range means nothing there; it has no dependencies to backtrack through.
        if req.startswith(("opentelemetry-", "grafana-foundation-sdk")):
            continue
        assert ">=" in req and "<" in req.replace("<=", ""), f"{req!r} needs a floor and a cap"


def test_installed_semantic_conventions_match_the_pins() -> None:
    """The venv the suite runs in holds the pinned release (pip resolved what we declared)."""
    from importlib.metadata import version

    pinned = next(
        r.split("==")[1]
        for r in _requirements()
        if r.startswith("opentelemetry-semantic-conventions==")
    )
    assert version("opentelemetry-semantic-conventions") == pinned
    assert version("opentelemetry-instrumentation") == pinned


def _user_docs() -> str:
    """The README and the documentation site's pages (the extras table may live in either)."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return "\n".join(p.read_text() for p in pages if p.is_file())


def test_every_extra_is_documented() -> None:
    """Each extra of pyproject.toml has a row in the user docs' extras table."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    docs = _user_docs()
    missing = [
        name
        for name in project["optional-dependencies"]
        if not re.search(rf"^\|[^|\n]*`{re.escape(name)}`", docs, re.MULTILINE)
    ]
    assert not missing, f"extras without a row in the extras table: {missing}"


def test_fastapi_extra_can_serve_an_app() -> None:
    """`pip install 'otelfin[fastapi]'` brings a server (uvicorn), not only the framework."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {
        re.split(r"[=<>~!\[ ;]", r, maxsplit=1)[0]
        for r in project["optional-dependencies"]["fastapi"]
    }
    assert {"fastapi", "uvicorn"} <= names


def test_python_versions_in_the_docs_match_requires_python() -> None:
    """The docs state the same Python floor as requires-python, and no ceiling it lacks."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floor = re.fullmatch(r">=(\d+\.\d+)", project["requires-python"])
    assert floor, project["requires-python"]
    docs = _user_docs()
    assert f"Python {floor.group(1)} or newer" in docs
    # "Python 3.10-3.13" would promise a ceiling requires-python does not have.
    assert not re.search(r"needs Python \d+\.\d+\s*-\s*\d+\.\d+", docs)
