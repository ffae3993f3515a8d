"""Hostile catalogue files: a CatalogueError naming file:line, bounded time and memory, never a
traceback (library, ``configure(catalogue=)`` and ``otelfin codes lint``)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import otelfin
from otelfin.catalogue import MAX_CATALOGUE_BYTES, CatalogueError, lint_files, load_catalogue
from otelfin.cli import main

_HEAD = "codes:\n  PAY-001:\n    message: ok\n"


def _alias_bomb() -> str:
    """A "billion laughs" catalogue: nine levels of nine aliases, shown in a finding."""
    lines = ["x:", "  - &a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol]"]
    for level in range(1, 9):
        lines.append(f"  - &a{level} [" + ",".join([f"*a{level - 1}"] * 9) + "]")
    lines += ["codes:", "  PAY-001:", "    message: x", "    severity: *a8"]
    return "\n".join(lines) + "\n"


# (name, text, line, reason): the shapes the reliability probe found plus their neighbours. The
# alias bomb itself is only ever loaded in a memory-capped child process (below).
_SHAPES = [
    ("grpc-list", _HEAD + "    grpc_status: [1]\n", 4, "bad grpc_status [1]"),
    ("severity-map", _HEAD + "    severity: {a: 1}\n", 4, "unknown severity {'a': 1}"),
    (
        "python-name",
        _HEAD + "    description: !!python/name:os.system\n",
        4,
        "cannot read this value: could not determine a constructor",
    ),
    (
        "python-object-domain",
        "domains:\n  PAY: !!python/object:os.system {}\n" + _HEAD,
        2,
        "cannot read this value",
    ),
    ("bad-int", _HEAD + "    http_status: !!int abc\n", 4, "'abc' is not a valid !!int"),
    ("huge-int", _HEAD + "    http_status: " + "9" * 5000 + "\n", 4, "is not a valid !!int"),
    ("bad-float", _HEAD + "    http_status: !!float x\n", 4, "'x' is not a valid !!float"),
    (
        "bad-timestamp",
        _HEAD + "    description: !!timestamp nope\n",
        4,
        "'nope' is not a valid !!timestamp",
    ),
    ("bad-version", "version: !!int one\n" + _HEAD, 1, "'one' is not a valid !!int"),
    (
        "deep-flow",
        _HEAD + "    description: " + "[" * 5000 + "]" * 5000 + "\n",
        4,
        "nesting deeper than 16 levels",
    ),
    (
        "deep-block",
        "codes:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 60)),
        16,
        "nesting deeper than 16 levels",
    ),
    ("nul", _HEAD + "    description: a\x00b\n", 4, "character #x0000 not allowed"),
    ("bell", "codes:\n  PAY-001:\n    message: a\x07b\n", 3, "character #x0007 not allowed"),
    ("escape", "\n" * 40 + "\x1b[2J" + _HEAD, 41, "character #x001b not allowed"),
    (
        "lone-surrogate",
        _HEAD + '    description: "\\ud800"\n',
        4,
        "'description' contains the character U+D800",
    ),
    ("escaped-nul", 'codes:\n  PAY-001:\n    message: "a\\0b"\n', 3, "U+0000"),
    ("plain-alias", "codes:\n  PAY-001: &c {message: x}\n  PAY-002: *c\n", 3, "YAML aliases"),
    ("undefined-alias", "codes:\n  PAY-001: *nope\n", 2, "YAML aliases (*nope)"),
    ("empty", "", 1, "empty catalogue"),
    ("only-comments", "# nothing here\n", 1, "empty catalogue"),
    ("two-documents", _HEAD + "---\n" + _HEAD, 4, "malformed YAML"),
]


@pytest.mark.parametrize(("name", "text", "line", "reason"), _SHAPES, ids=[s[0] for s in _SHAPES])
def test_hostile_shape_is_a_catalogue_error_at_its_line(
    tmp_path: Path, name: str, text: str, line: int, reason: str
) -> None:
    """Each hostile shape loads to a CatalogueError whose message names file:line: reason."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    start = time.perf_counter()
    with pytest.raises(CatalogueError) as info:
        load_catalogue(path)
    assert time.perf_counter() - start < 5
    assert any(
        f.path == str(path) and f.line == line and reason in f.reason for f in info.value.findings
    ), str(info.value)
    assert all(f"{path}:" in row for row in str(info.value).splitlines())


@pytest.mark.parametrize(("name", "text", "line", "reason"), _SHAPES, ids=[s[0] for s in _SHAPES])
def test_codes_lint_on_hostile_shape_never_tracebacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str, line: int, reason: str
) -> None:
    """codes lint reports file:line: reason; a file it cannot parse at all is exit 2."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    fatal = any(f.fatal for f in lint_files([path]))
    status = main(["codes", "lint", str(path)])
    captured = capsys.readouterr()
    assert status == (2 if fatal else 1)
    assert f"{path}:{line}: " in captured.out + captured.err
    assert "Traceback" not in captured.err


def test_parse_errors_are_fatal_and_content_errors_are_not(tmp_path: Path) -> None:
    """Unparseable files are flagged fatal (exit 2); a wrong field value stays a finding (1)."""
    alias = tmp_path / "alias.yaml"
    alias.write_text("codes:\n  PAY-001: &c {message: x}\n  PAY-002: *c\n")
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(_HEAD + "    grpc_status: [1]\n")
    assert [f.fatal for f in lint_files([alias])] == [True]
    assert [f.fatal for f in lint_files([wrong])] == [False]


def test_alias_bomb_is_refused_with_bounded_memory(tmp_path: Path) -> None:
    """The billion-laughs file is refused in well under a second, with ~no memory growth.

    Run in a child under a 1.5 GiB address-space limit and a 30 s timeout: before the fix the
    loader grew ~100 MB/s without end, so this fails instead of swapping the machine.
    """
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb())
    assert len(path.read_bytes()) < 700
    child = textwrap.dedent(
        f"""
        import json, resource, sys, time, tracemalloc
        limit = 3 << 29
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        from otelfin.catalogue import CatalogueError, default_catalogue, load_catalogue
        default_catalogue()  # loaded once per process: not part of the figure
        import otelfin._catalogue_yaml  # PyYAML, imported by the first file read: neither
        tracemalloc.start()
        start = time.perf_counter()
        try:
            load_catalogue({str(path)!r})
            message = "loaded"
        except CatalogueError as exc:
            message = str(exc)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        print(json.dumps({{"message": message, "seconds": seconds, "peak": peak}}))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert "YAML aliases (*a0) are not allowed in a catalogue" in result["message"]
    assert f"{path}:3:" in result["message"]
    assert result["seconds"] < 1.0
    assert result["peak"] < 256 << 10  # bytes allocated by the load, at their peak


def test_configure_with_an_alias_raises_catalogue_error(tmp_path: Path) -> None:
    """configure(catalogue=file with an alias) raises CatalogueError (a ValueError) at once."""
    path = tmp_path / "alias.yaml"
    path.write_text("codes:\n  PAY-001: &c {message: x}\n  PAY-002:\n    message: *c\n")
    with pytest.raises(CatalogueError, match=r"alias\.yaml:4: YAML aliases \(\*c\)"):
        otelfin.configure("svc", catalogue=path)


def test_huge_file_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    """A catalogue over MAX_CATALOGUE_BYTES is refused at line 1, quickly."""
    path = tmp_path / "huge.yaml"
    with path.open("w") as out:
        out.write("codes:\n")
        out.write("# padding\n" * (MAX_CATALOGUE_BYTES // 10 + 10))
    start = time.perf_counter()
    with pytest.raises(CatalogueError, match=r"huge\.yaml:1: larger than 2 MiB"):
        load_catalogue(path)
    assert time.perf_counter() - start < 2


def test_non_utf8_bytes_name_their_line(tmp_path: Path) -> None:
    """A non-UTF-8 byte on line 3 is reported on line 3, with its byte offset."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"codes:\n  PAY-001:\n    message: caf\xe9\n")
    with pytest.raises(CatalogueError) as info:
        load_catalogue(path)
    (finding,) = info.value.findings
    assert (finding.line, finding.fatal) == (3, True)
    assert finding.reason == "cannot read: not UTF-8 text (byte 35)"


def test_a_big_but_legal_catalogue_still_loads(tmp_path: Path) -> None:
    """The caps leave room for a large real catalogue (500 codes); an unused anchor is fine."""
    rows = ["codes:"]
    for i in range(500):
        rows += [f"  BIG-{i:03d}:", f"    message: Message {i}", f"    severity: &s{i} error"]
    path = tmp_path / "big.yaml"
    path.write_text("\n".join(rows) + "\n")
    catalogue = load_catalogue(path, include_default=False)
    assert len(catalogue) == 500 and catalogue["BIG-499"].severity == "error"


# --- fuzz --------------------------------------------------------------------------------

_FRAGMENTS = st.sampled_from(
    [
        "codes:",
        "domains:",
        "version: 1",
        "  PAY-001:",
        "    message: x",
        "    severity: error",
        "    grpc_status: [1]",
        "    http_status: !!int 4x",
        "&a [1, 2]",
        "*a",
        "!!python/name:os.system",
        "!!timestamp 2024-13-45",
        "!!binary ===",
        "{",
        "[",
        "]",
        "}",
        "? ",
        ": ",
        "- ",
        "'",
        '"\\u',
        "\x00",
        "\x1b",
        "\ufeff",
        "\t",
        "---",
        "...",
        "%YAML 1.1",
        "<<: *a",
    ]
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.one_of(
        st.binary(max_size=400),
        st.lists(st.one_of(_FRAGMENTS, st.text(max_size=8)), max_size=30).map(
            lambda parts: "\n".join(parts).encode("utf-8", "surrogatepass")
        ),
    )
)
def test_any_bytes_load_or_raise_catalogue_error(tmp_path: Path, data: bytes) -> None:
    """Any bytes: load_catalogue returns or raises CatalogueError naming the file; fast."""
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(data)
    start = time.perf_counter()
    try:
        load_catalogue(path, include_default=False)
    except CatalogueError as exc:
        assert exc.findings and all(f.path == str(path) and f.line >= 1 for f in exc.findings)
    assert time.perf_counter() - start < 2


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(_FRAGMENTS, st.binary(max_size=6).map(repr)), max_size=40))
def test_codes_lint_any_input_exits_0_1_2_without_traceback(parts: list[str]) -> None:
    """codes lint in a real process, on fuzzed input: exit 0/1/2, no traceback, bounded."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.yaml"
        path.write_bytes("\n".join(parts).encode("utf-8", "surrogatepass"))
        status = main(["codes", "lint", str(path)])
    assert status in (0, 1, 2)


@pytest.mark.parametrize("command", [["codes", "lint"], ["logs", "validate", "--catalogue"]])
def test_cli_on_alias_bomb_exits_2_without_traceback(tmp_path: Path, command: list[str]) -> None:
    """A real `otelfin` process given the bomb: exit 2, file:line: reason, memory-capped."""
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb())
    logs = tmp_path / "app.jsonl"
    logs.write_text("")
    extra = [str(logs)] if command[0] == "logs" else []
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "otelfin.cli", *command, str(path), *extra],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29)),
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"{path}:3: YAML aliases (*a0) are not allowed in a catalogue" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.perf_counter() - start < 30
