"""Every Python and shell example in the docs and the README runs as printed.

Each page is one test: its fenced blocks run in order in a fresh directory, as a reader
would paste them. ``python`` blocks run with this venv's interpreter; ``sh`` blocks run with
``bash -eo pipefail`` with this venv's ``bin`` first on PATH (so ``python``, ``otelfin``,
``uvicorn`` and ``pip`` are the ones the reader installed). A block with ``title="app.py"``
(any language) is written to that file instead of run, for the blocks after it to use.

An HTML comment right above a block (invisible on the site) tells the runner more:

- ``<!-- test: background port=8000 -->``: start the block in the background (a server the
  next blocks talk to), wait until the port accepts, stop it (SIGTERM) when the page ends.
- ``<!-- test: stop -->``: stop the background servers first (SIGTERM, as Ctrl+C would end
  them in the reader's first terminal), so what they flush on the way out is there.
- ``<!-- test: exit=1 -->``: the block must end with that status (a check that finds problems).
- ``<!-- test: contains="approved" -->``: its output must contain that text (repeatable).
- ``<!-- test: requires=127.0.0.1:6379 -->``: needs that service; the page is skipped with a
  reason when it is down, and fails instead under ``OTELFIN_REQUIRE_INTEGRATION=1``.
- ``<!-- test: skip: REASON -->``: not runnable here by design (it installs from the network,
  clones a repository, ...); the reason is required and shown in the test report.

A page-level ``<!-- test-page: ports=8000,9464 -->`` replaces those port numbers in every block
of the page with free ports, so pages can run side by side with other work on the machine.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
RUN_LANGUAGES = {"python": "python", "py": "python", "sh": "sh", "bash": "sh", "shell": "sh"}
BLOCK_TIMEOUT_S = 180
SERVER_START_S = 60

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)(?P<attrs>[^\n`]*)$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*test:\s*(?P<body>.*?)\s*-->\s*$")
_PAGE_DIRECTIVE = re.compile(r"<!--\s*test-page:\s*(?P<body>.*?)\s*-->")
_TITLE = re.compile(r'title="(?P<title>[^"]+)"')


@dataclass
class Block:
    """One fenced block and what the comment above it asks for."""

    page: Path
    line: int
    lang: str
    title: str | None
    code: str
    skip: str | None = None
    background_port: int | None = None
    exit_code: int = 0
    contains: list[str] = field(default_factory=list)
    requires: list[str] = field(default_factory=list)
    stop: bool = False

    @property
    def where(self) -> str:
        page = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page
        return f"{page}:{self.line}"


def _apply_directive(block: Block, body: str) -> None:
    if body.startswith("skip:"):
        block.skip = body[len("skip:") :].strip()
        if not block.skip:
            raise ValueError(f"{block.where}: a skipped example needs its reason")
        return
    for word in shlex.split(body):
        key, _, value = word.partition("=")
        if key == "background":
            continue
        if key == "stop":
            block.stop = True
            continue
        if key == "port":
            block.background_port = int(value)
        elif key == "exit":
            block.exit_code = int(value)
        elif key == "contains":
            block.contains.append(value)
        elif key == "requires":
            block.requires.extend(v for v in value.split(",") if v)
        else:
            raise ValueError(f"{block.where}: unknown test directive {word!r}")
    if "background" in body.split() and block.background_port is None:
        raise ValueError(f"{block.where}: a background block needs port=N")


def parse_blocks(page: Path) -> list[Block]:
    """The page's fenced blocks, each with its directive (if any)."""
    lines = page.read_text("utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match or (not match.group("lang") and not match.group("attrs").strip()):
            i += 1
            continue
        indent = match.group("indent")
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        title = _TITLE.search(match.group("attrs"))
        block = Block(
            page=page,
            line=start + 1,
            lang=match.group("lang").lower(),
            title=title.group("title") if title else None,
            code="\n".join(body) + "\n",
        )
        above = start - 1
        while above >= 0 and not lines[above].strip():
            above -= 1
        directive = _DIRECTIVE.match(lines[above]) if above >= 0 else None
        if directive:
            _apply_directive(block, directive.group("body"))
        blocks.append(block)
    return blocks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OTELFIN_"))}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("PYTHONPATH", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["NO_COLOR"] = "1"
    return env


def _command(block: Block, workdir: Path) -> list[str]:
    if RUN_LANGUAGES[block.lang] == "python":
        script = workdir / f"_example_line{block.line}.py"
        script.write_text(block.code, "utf-8")
        return [sys.executable, script.name]
    return ["bash", "-eo", "pipefail", "-c", block.code]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def _pages_with_examples() -> list[Path]:
    return [p for p in PAGES if any(_runs(b) or b.skip for b in parse_blocks(p))]


def _runs(block: Block) -> bool:
    return block.title is None and block.lang in RUN_LANGUAGES and block.skip is None


def _require(services: list[str]) -> None:
    for service in services:
        host, _, port = service.rpartition(":")
        if not _port_open(host, int(port)):
            reason = f"{service} is not reachable"
            if os.environ.get("OTELFIN_REQUIRE_INTEGRATION") == "1":
                pytest.fail(f"{reason} (OTELFIN_REQUIRE_INTEGRATION=1)")
            pytest.skip(reason)


@pytest.mark.parametrize("page", _pages_with_examples(), ids=lambda p: str(p.relative_to(ROOT)))
def test_page_examples_run(page: Path, tmp_path: Path) -> None:
    """Each example block on the page runs as printed, in order, in one fresh directory."""
    blocks = parse_blocks(page)
    text = page.read_text("utf-8")
    ports: dict[str, str] = {}
    for directive in _PAGE_DIRECTIVE.finditer(text):
        for word in shlex.split(directive.group("body")):
            key, _, value = word.partition("=")
            assert key == "ports", f"{page}: unknown test-page directive {word!r}"
            ports.update({p: str(_free_port()) for p in value.split(",") if p})
    _require([r for b in blocks for r in b.requires])

    def localise(code: str) -> str:
        for old, new in ports.items():
            code = re.sub(rf"(?<![\d.]){old}(?!\d)", new, code)
        return code

    env = _env()
    servers: list[tuple[Block, subprocess.Popen[bytes], Path]] = []
    try:
        for block in blocks:
            if block.skip is not None:
                continue
            if block.title is not None:
                target = tmp_path / block.title
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(localise(block.code), "utf-8")
                continue
            if block.lang not in RUN_LANGUAGES:
                continue
            if block.stop:
                for _, proc, _ in servers:
                    _stop(proc)
            runnable = Block(**{**block.__dict__, "code": localise(block.code)})
            command = _command(runnable, tmp_path)
            if block.background_port is not None:
                port = int(ports.get(str(block.background_port), block.background_port))
                log = tmp_path / f"_server_line{block.line}.log"
                with log.open("wb") as out:
                    proc = subprocess.Popen(
                        command,
                        cwd=tmp_path,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                servers.append((block, proc, log))
                deadline = time.monotonic() + SERVER_START_S
                while not _port_open("127.0.0.1", port):
                    if proc.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(
                            f"{block.where}: the server never listened on {port}:\n"
                            + log.read_text(errors="replace")[-3000:]
                        )
                    time.sleep(0.1)
                continue
            result = subprocess.run(
                command,
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=BLOCK_TIMEOUT_S,
            )
            output = result.stdout + result.stderr
            assert result.returncode == block.exit_code, (
                f"{block.where}: exit {result.returncode}, expected {block.exit_code}\n"
                f"{output[-4000:]}"
            )
            assert "does not provide the extra" not in output, f"{block.where}: {output}"
            for expected in block.contains:
                assert localise(expected) in output, f"{block.where}: no {expected!r} in\n{output}"
    finally:
        for _, proc, _ in servers:
            _stop(proc)
    for block, proc, log in servers:
        # A server that died while the page ran (not by our SIGTERM) is a broken example.
        assert proc.returncode in (0, -signal.SIGTERM, 128 + signal.SIGTERM), (
            f"{block.where}: server exited {proc.returncode}\n"
            + log.read_text(errors="replace")[-3000:]
        )


def test_every_example_is_run_or_skipped_with_a_reason() -> None:
    """Each python/sh block is run, or names why it cannot be; directives parse."""
    runs = skipped = 0
    for page in PAGES:
        for block in parse_blocks(page):
            if block.lang in RUN_LANGUAGES or block.skip:
                if block.skip:
                    skipped += 1
                    assert len(block.skip) > 20, f"{block.where}: say why it cannot run"
                elif block.title is None:
                    runs += 1
    assert runs > skipped, (runs, skipped)


def test_directive_parser_rejects_unknown_words(tmp_path: Path) -> None:
    """A typo in a directive fails loudly instead of silently not testing."""
    page = tmp_path / "page.md"
    page.write_text("<!-- test: backgrond port=1 -->\n```sh\ntrue\n```\n")
    with pytest.raises(ValueError, match="unknown test directive"):
        parse_blocks(page)
    page.write_text("<!-- test: skip: -->\n```sh\ntrue\n```\n")
    with pytest.raises(ValueError, match="needs its reason"):
        parse_blocks(page)
