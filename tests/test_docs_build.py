"""The documentation site builds in strict mode, with its generated reference pages current."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mkdocs_build_strict_has_no_warning(tmp_path: Path) -> None:
    """`mkdocs build --strict`: no broken link, anchor, nav entry or API reference."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    env = {k: v for k, v in env.items() if not k.startswith(("OTEL_", "OTELFIN_"))}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    settings = (tmp_path / "reference" / "settings" / "index.html").read_text("utf-8")
    cli = (tmp_path / "reference" / "cli" / "index.html").read_text("utf-8")
    api = (tmp_path / "reference" / "api" / "index.html").read_text("utf-8")
    assert "OTELFIN_METRICS_SLO" in settings and "generated: settings" not in settings
    assert 'id="otelfin-logs-validate"' in cli and "generated: cli" not in cli
    assert 'id="otelfin.configure"' in api


def test_every_setting_and_command_is_in_the_generated_pages() -> None:
    """The hook renders every settings row and every CLI command, from the code itself."""
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import _hooks  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(ROOT / "docs"))
    from otelfin import _settings

    table = _hooks.settings_markdown()
    assert all(f"| `{s.name}` |" in table for s in _settings.SETTINGS)
    page = _hooks.on_page_markdown("# CLI\n\n<!-- generated: cli -->\n")
    for command in ("demo", "codes lint", "logs validate", "logs filter", "p99 report"):
        assert f"`otelfin {command}`" in page
        assert f"usage: otelfin {command}" in page
