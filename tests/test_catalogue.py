"""The error-code catalogue: packaged default, merging, and lint findings with file:line."""

from __future__ import annotations

import textwrap
from importlib import resources
from pathlib import Path

import pytest

from otelfin import _catalogue_yaml, catalogue
from otelfin.catalogue import (
    CODE_PATTERN,
    CatalogueError,
    default_catalogue,
    lint_files,
    load_catalogue,
)


def write(tmp_path: Path, text: str, name: str = "codes.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def test_default_catalogue_is_realistic_and_lint_clean() -> None:
    """The packaged catalogue has 30+ complete codes across the payment domains and lints clean."""
    cat = default_catalogue()
    assert len(cat) >= 30
    assert {"AUTH", "DB", "PAY", "RISK", "LEDGER", "GW"} <= {e.domain for e in cat.values()}
    for entry in cat.values():
        assert CODE_PATTERN.fullmatch(entry.code)
        assert entry.message and entry.http_status and entry.grpc_status
    assert cat["PAY-012"].message == "Insufficient balance"
    assert cat["PAY-012"].is_business_outcome
    assert not cat["DB-003"].is_business_outcome
    assert cat["PAY-012"].owner == "payments-team"
    assert default_catalogue() is cat  # loaded once
    path = Path(__file__).parents[1] / "otelfin" / "errorcodes.yaml"
    assert lint_files([path]) == []


def test_packaged_catalogue_reads_the_same_with_libyaml() -> None:
    """The packaged file composed by libyaml (the start-up path) gives exactly the codes,
    domains and source lines of the pure-Python composer every other file goes through."""
    assert _catalogue_yaml.PACKAGED_LOADER is not None  # PyYAML's wheels carry libyaml
    text = resources.files("otelfin").joinpath("errorcodes.yaml").read_text("utf-8")
    fast = catalogue._parse_text(text, "otelfin/errorcodes.yaml", packaged=True)
    slow = catalogue._parse_text(text, "otelfin/errorcodes.yaml")
    assert fast.findings == slow.findings == []
    assert fast.codes == slow.codes and fast.domains == slow.domains
    assert len(fast.codes) >= 30
    assert fast.codes["PAY-012"].source == slow.codes["PAY-012"].source != "<unknown>"


def test_packaged_snapshot_is_current() -> None:
    """errorcodes.parsed.json is the parse of errorcodes.yaml as it stands (after editing the
    YAML, ``make catalogue-snapshot`` writes it again)."""
    package = resources.files("otelfin")
    text = package.joinpath("errorcodes.yaml").read_text("utf-8")
    written = package.joinpath("errorcodes.parsed.json").read_text("utf-8")
    assert written == catalogue._snapshot_json(text)


def test_default_catalogue_from_the_snapshot_equals_the_yaml() -> None:
    """The packaged catalogue read at start-up (the snapshot) has exactly the codes, domains,
    source lines and sources that parsing errorcodes.yaml gives."""
    text = resources.files("otelfin").joinpath("errorcodes.yaml").read_text("utf-8")
    parsed = catalogue._parse_text(text, "otelfin/errorcodes.yaml")
    cat = default_catalogue()
    assert dict(cat.codes) == parsed.codes and len(cat) >= 30
    assert dict(cat.domains) == parsed.domains
    assert cat.sources == ("otelfin/errorcodes.yaml",)
    assert cat["PAY-012"].source == parsed.codes["PAY-012"].source != "<unknown>"


def test_default_catalogue_does_not_load_pyyaml(tmp_path: Path) -> None:
    """Loading the packaged catalogue (every configure() does) imports no PyYAML; reading a
    service's YAML file still does, and still gets the packaged codes under its own."""
    import subprocess
    import sys

    path = write(tmp_path, "codes:\n  SHOP-001: {message: Basket expired, severity: warning}\n")
    code = (
        "import sys\n"
        "from otelfin.catalogue import default_catalogue, load_catalogue\n"
        "assert default_catalogue()['PAY-012'].message == 'Insufficient balance'\n"
        "print('yaml' in sys.modules)\n"
        f"cat = load_catalogue({str(path)!r})\n"
        "print('yaml' in sys.modules, cat['SHOP-001'].severity, cat['PAY-012'].owner)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.splitlines() == ["False", "True warning payments-team"]


def test_stale_or_broken_snapshot_is_ignored(tmp_path: Path) -> None:
    """A snapshot made from other YAML (edited, not regenerated), unreadable or missing is not
    used: the YAML beside it is parsed instead."""
    text = resources.files("otelfin").joinpath("errorcodes.yaml").read_text("utf-8")
    good = tmp_path / "good.json"
    good.write_text(catalogue._snapshot_json(text), encoding="utf-8")
    assert catalogue._from_snapshot(good, text) == default_catalogue()
    assert catalogue._from_snapshot(good, text + "# edited\n") is None
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    assert catalogue._from_snapshot(broken, text) is None
    assert catalogue._from_snapshot(tmp_path / "missing.json", text) is None


def test_entries_are_frozen() -> None:
    """Catalogue entries and the mapping itself cannot be mutated."""
    cat = default_catalogue()
    with pytest.raises(AttributeError):
        cat["PAY-012"].message = "changed"  # type: ignore[misc]
    with pytest.raises(TypeError):
        cat.codes["NEW-001"] = cat["PAY-012"]  # type: ignore[index]


def test_service_catalogue_extends_and_overrides(tmp_path: Path) -> None:
    """A service file adds codes and replaces same-named ones; the default stays available."""
    path = write(
        tmp_path,
        """
        codes:
          PAY-012:
            message: Not enough funds on the wallet
            severity: warning
          WALLET-001:
            message: Wallet locked
            severity: error
            retryable: true
            http_status: 423
            grpc_status: FAILED_PRECONDITION
        """,
    )
    cat = load_catalogue(path)
    assert cat["WALLET-001"].retryable is True
    assert cat["WALLET-001"].source == f"{path}:5"
    assert cat["PAY-012"].message == "Not enough funds on the wallet"
    assert "AUTH-001" in cat
    assert "AUTH-001" not in load_catalogue(path, include_default=False)


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("codes:\n  PAY-1:\n    message: x\n", 2, "bad code format 'PAY-1'"),
        ("codes:\n  pay-001:\n    message: x\n", 2, "bad code format"),
        (
            "codes:\n  PAY-001:\n    message: a\n  PAY-001:\n    message: b\n",
            4,
            "duplicate key 'PAY-001' in codes (first at line 2)",
        ),
        (
            "codes:\n  PAY-001:\n    message: x\n    severity: fatal\n",
            4,
            "unknown severity 'fatal'",
        ),
        ("codes:\n  PAY-001:\n    message: x\n    http_status: 99\n", 4, "bad http_status 99"),
        ("codes:\n  PAY-001:\n    message: x\n    http_status: '402'\n", 4, "bad http_status"),
        (
            "codes:\n  PAY-001:\n    message: x\n    grpc_status: NOPE\n",
            4,
            "bad grpc_status 'NOPE'",
        ),
        ("codes:\n  PAY-001:\n    message: x\n    retryable: maybe\n", 4, "'retryable' must be"),
        ("codes:\n  PAY-001:\n    severity: error\n", 2, "'message' is required"),
        ("codes:\n  PAY-001:\n    message: x\n    colour: red\n", 4, "unknown field 'colour'"),
        (
            "domains:\n  PAY: {owner: p}\ncodes:\n  RISK-001:\n    message: x\n",
            4,
            "unknown domain 'RISK'",
        ),
        ("codes:\n  PAY-001: [1, 2]\n", 2, "PAY-001 must be a mapping"),
        ("codes:\n  PAY-001:\n    message: 'x\n", 3, "malformed YAML"),
        ("codes: {PAY-001: {message: x}\n", 2, "malformed YAML"),
        ("version: 2\ncodes: {}\n", 1, "unsupported catalogue version"),
        ("domains: {}\n", 1, "missing 'codes' section"),
        ("", 1, "empty catalogue"),
    ],
)
def test_lint_findings_name_file_and_line(
    tmp_path: Path, text: str, line: int, reason: str
) -> None:
    """Each kind of mistake is found and reported as file:line: reason."""
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    findings = lint_files([path])
    assert findings, "expected a finding"
    assert any(f.line == line and reason in f.reason for f in findings), findings
    assert all(str(f).startswith(f"{path}:") for f in findings)
    with pytest.raises(CatalogueError) as info:
        load_catalogue(path)
    assert f"{path}:" in str(info.value)


def test_duplicates_across_files(tmp_path: Path) -> None:
    """lint_files reports a code defined in two files, naming both places."""
    a = write(tmp_path, "codes:\n  PAY-100:\n    message: a\n", "a.yaml")
    b = write(tmp_path, "codes:\n  X-1: {}\n  PAY-100:\n    message: b\n", "b.yaml")
    findings = lint_files([a, b])
    dup = [f for f in findings if "duplicate code PAY-100" in f.reason]
    assert len(dup) == 1
    assert dup[0].path == str(b) and dup[0].line == 3
    assert f"{a}:2" in dup[0].reason


def test_unreadable_and_binary_files(tmp_path: Path) -> None:
    """A missing or non-UTF-8 file is a finding, not a traceback."""
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    findings = lint_files([tmp_path / "missing.yaml", binary])
    assert len(findings) == 2
    assert all("cannot read" in f.reason for f in findings)


def test_domain_owner_is_inherited(tmp_path: Path) -> None:
    """A code without its own owner takes its domain's owner."""
    path = write(
        tmp_path,
        """
        domains:
          WALLET: {owner: wallet-team, description: Wallets}
        codes:
          WALLET-001: {message: Locked, severity: error}
          WALLET-002: {message: Closed, severity: error, owner: someone-else}
        """,
    )
    cat = load_catalogue(path, include_default=False)
    assert cat["WALLET-001"].owner == "wallet-team"
    assert cat["WALLET-002"].owner == "someone-else"
