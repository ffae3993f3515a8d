"""The error-code catalogue: loading, merging and linting.

A catalogue is YAML (format in docs/reference/catalogue.md). It is parsed into PyYAML's node
tree rather than with ``safe_load`` so that every finding can name ``file:line`` and duplicate
keys, which ``safe_load`` silently collapses, are caught.

Hostile files are refused with a finding, never a traceback or unbounded work: aliases
(``*name``) are not allowed (a 583-byte "billion laughs" file otherwise expands without end
when a value is shown in a finding), nesting deeper than :data:`MAX_DEPTH` and files larger than
:data:`MAX_CATALOGUE_BYTES` are refused, and a value PyYAML cannot construct (an unknown tag,
``!!int abc``) is reported at its line.

PyYAML is imported only when a YAML file is read (``otelfin._catalogue_yaml`` holds its loader):
the packaged catalogue, which every ``configure()`` loads, comes from ``errorcodes.parsed.json``,
a copy already parsed from ``errorcodes.yaml`` and checked against it (see
:func:`default_catalogue`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import yaml

__all__ = [
    "CODE_PATTERN",
    "DOMAIN_PATTERN",
    "LEVEL_NAMES",
    "OUTCOMES",
    "SEVERITIES",
    "Catalogue",
    "CatalogueError",
    "CatalogueSlot",
    "ErrorCode",
    "Finding",
    "default_catalogue",
    "lint_files",
    "load_catalogue",
]

#: A catalogue file larger than this is refused (a real one is a few KiB; 2 MiB is ~10,000
#: codes, and PyYAML's pure-Python composer needs ~2 s per MiB, needed here for line numbers).
MAX_CATALOGUE_BYTES = 2 << 20
#: Deepest nesting of YAML collections accepted (a catalogue needs 4: top, codes, code, value).
MAX_DEPTH = 16

#: ``DOMAIN-NNN``: an upper-case domain of 2-12 letters/digits (starting with a letter), a dash and
#: exactly three digits.
DOMAIN_PATTERN = re.compile(r"[A-Z][A-Z0-9]{1,11}")
CODE_PATTERN = re.compile(DOMAIN_PATTERN.pattern + r"-[0-9]{3}")
SEVERITIES = ("info", "warning", "error", "critical")
#: Log levels, lowest first: the severities plus ``debug`` (logs, settings and the validator).
LEVEL_NAMES = ("debug", *SEVERITIES)
#: Severities that describe an expected business outcome (a decline), not a fault.
BUSINESS_SEVERITIES = frozenset({"info", "warning"})
#: Values of a code's optional ``outcome`` field: what a request ending with the code counts as.
OUTCOMES = ("declined", "error")

_GRPC_STATUSES = frozenset(
    {
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    }
)
_CODE_FIELDS = frozenset(
    {
        "message",
        "severity",
        "retryable",
        "http_status",
        "grpc_status",
        "description",
        "owner",
        "outcome",
    }
)
_TOP_FIELDS = frozenset({"version", "domains", "codes"})


@dataclass(frozen=True, slots=True)
class ErrorCode:
    """One registered error code."""

    code: str
    message: str
    severity: str = "error"
    retryable: bool = False
    http_status: int | None = None
    grpc_status: str | None = None
    description: str | None = None
    owner: str | None = None
    source: str = "<unknown>"
    #: ``declined`` or ``error`` when the catalogue says so; None: decided by ``severity``.
    declared_outcome: str | None = None

    @property
    def domain(self) -> str:
        """The part before the dash, e.g. ``PAY`` for ``PAY-012``."""
        return self.code.split("-", 1)[0]

    @property
    def is_business_outcome(self) -> bool:
        """True for expected outcomes such as a decline (see :attr:`outcome`)."""
        return self.outcome == "declined"

    @property
    def outcome(self) -> str:
        """``declined`` or ``error``: the code's ``outcome`` field, else by severity.

        Severity info/warning is a business outcome (``declined``); error/critical a failure.
        """
        if self.declared_outcome is not None:
            return self.declared_outcome
        return "declined" if self.severity in BUSINESS_SEVERITIES else "error"


@dataclass(frozen=True, slots=True)
class Finding:
    """A problem found in a catalogue file, located at ``path:line``."""

    path: str
    line: int
    reason: str
    #: True when the file could not be read or parsed at all (an input error, not a lint
    #: finding: ``otelfin codes lint`` exits 2 for it).
    fatal: bool = field(default=False, compare=False)

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


class CatalogueError(ValueError):
    """A catalogue file could not be loaded; ``findings`` lists every problem."""

    def __init__(self, findings: Iterable[Finding]) -> None:
        self.findings = tuple(findings)
        super().__init__("\n".join(str(f) for f in self.findings) or "invalid catalogue")


@dataclass(frozen=True)
class Catalogue(Mapping[str, ErrorCode]):
    """An immutable mapping of code to :class:`ErrorCode`, plus the declared domains."""

    codes: Mapping[str, ErrorCode] = field(default_factory=dict)
    domains: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "codes", MappingProxyType(dict(self.codes)))
        object.__setattr__(self, "domains", MappingProxyType(dict(self.domains)))

    def __getitem__(self, code: str) -> ErrorCode:
        return self.codes[code]

    def __iter__(self) -> Iterator[str]:
        return iter(self.codes)

    def __len__(self) -> int:
        return len(self.codes)

    def __contains__(self, code: object) -> bool:
        return code in self.codes

    def __hash__(self) -> int:
        return hash(self.sources)

    def merged(self, other: Catalogue) -> Catalogue:
        """Return a catalogue with ``other``'s codes and domains laid over this one's."""
        return Catalogue(
            codes={**self.codes, **other.codes},
            domains={**self.domains, **other.domains},
            sources=self.sources + other.sources,
        )


class _Parsed:
    """The result of reading one file: its codes, domains and findings."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.codes: dict[str, ErrorCode] = {}
        self.domains: dict[str, dict[str, Any]] = {}
        self.findings: list[Finding] = []

    def find(self, node: yaml.Node | None, reason: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 1
        self.findings.append(Finding(self.path, line, reason))

    def fail(self, line: int, reason: str) -> _Parsed:
        """Record that the file cannot be parsed at all (``line`` 1-based)."""
        self.findings.append(Finding(self.path, line, reason, fatal=True))
        return self


class _Unconstructable:
    """Stands for a value PyYAML could not build (already reported as a finding)."""

    def __repr__(self) -> str:
        return "<unreadable value>"


_UNREADABLE = _Unconstructable()


def _scalar(parsed: _Parsed, loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    """The Python value of ``node``, or :data:`_UNREADABLE` with a finding at its line."""
    import yaml

    try:
        return loader.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, TypeError, AttributeError, OverflowError) as exc:
        # An unknown tag (!!python/name:...), !!int abc, !!timestamp nope, a 5,000-digit int.
        if isinstance(exc, yaml.YAMLError):
            problem = str(getattr(exc, "problem", None) or exc).splitlines()[0]
        else:
            tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")
            shown = _show(node.value) if isinstance(node, yaml.ScalarNode) else "value"
            problem = f"{shown} is not a valid {tag}"
        parsed.find(node, f"cannot read this value: {_short(problem)}")
        return _UNREADABLE


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show(value: Any) -> str:
    """``repr(value)`` cut short, for a finding (values here are small: no aliases)."""
    return _short(repr(value), 60)


def _text_problem(value: str) -> str | None:
    """Why ``value`` cannot be a catalogue text (control characters, lone surrogates)."""
    from otelfin import _catalogue_yaml

    match = _catalogue_yaml.BAD_TEXT.search(value)
    if match is None:
        return None
    return f"contains the character U+{ord(match.group()):04X}, which text output cannot carry"


def _pairs(parsed: _Parsed, node: yaml.Node, what: str) -> list[tuple[str, yaml.Node, yaml.Node]]:
    """The ``(key, key_node, value_node)`` pairs of a mapping node; flags duplicate keys."""
    import yaml

    if not isinstance(node, yaml.MappingNode):
        parsed.find(node, f"{what} must be a mapping")
        return []
    seen: dict[str, int] = {}
    out: list[tuple[str, yaml.Node, yaml.Node]] = []
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            parsed.find(key_node, f"{what}: keys must be plain strings")
            continue
        key = str(key_node.value)
        if key in seen:
            parsed.find(key_node, f"duplicate key {key!r} in {what} (first at line {seen[key]})")
            continue
        seen[key] = key_node.start_mark.line + 1
        out.append((key, key_node, value_node))
    return out


def _parse_text(text: str, path: str, *, packaged: bool = False) -> _Parsed:
    """Parse ``text``; ``packaged`` (otelfin's own file, which the test-suite keeps clean)
    composes with libyaml when it is there: the same nodes, lines and values in ~1 ms instead
    of ~25 ms of pure-Python composing, which was a tenth of ``configure()``'s start-up. Its
    alias and depth checks are for files otelfin does not ship."""
    import yaml

    from otelfin import _catalogue_yaml

    parsed = _Parsed(path)
    try:
        loader = _catalogue_yaml.loader(text, max_depth=MAX_DEPTH, packaged=packaged)
    except yaml.reader.ReaderError as exc:
        # NUL and other control characters are refused by the reader before any parsing.
        line = text.count("\n", 0, exc.position) + 1
        return parsed.fail(line, f"malformed YAML: character #x{exc.character:04x} not allowed")
    try:
        return _parse_loaded(parsed, loader, text)
    except RecursionError:  # pragma: no cover - MAX_DEPTH keeps the composer shallow
        return parsed.fail(1, f"nesting deeper than {MAX_DEPTH} levels")
    finally:
        loader.dispose()


def _parse_loaded(parsed: _Parsed, loader: yaml.SafeLoader, text: str) -> _Parsed:
    import yaml

    from otelfin import _catalogue_yaml

    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = f"malformed YAML: {exc.problem or exc.context}"
        if isinstance(exc, _catalogue_yaml.Refused):
            reason = str(exc.problem)
        elif exc.context_mark is not None and "end of stream" in str(exc.problem):
            # An unterminated quote or bracket: where it opened is what the reader needs.
            reason = f"malformed YAML: {exc.context} starting here was never closed"
            mark = exc.context_mark
        return parsed.fail(mark.line + 1 if mark is not None else 1, reason)
    except yaml.reader.ReaderError as exc:  # a character refused in a later buffer
        line = text.count("\n", 0, exc.position) + 1
        return parsed.fail(line, f"malformed YAML: character #x{exc.character:04x} not allowed")
    except yaml.YAMLError as exc:
        return parsed.fail(1, f"malformed YAML: {_short(str(exc).splitlines()[0])}")
    if root is None:
        return parsed.fail(1, "empty catalogue")
    top = _pairs(parsed, root, "catalogue")
    sections = {key: (key_node, value) for key, key_node, value in top}
    for key, key_node, _ in top:
        if key not in _TOP_FIELDS:
            parsed.find(key_node, f"unknown top-level key {_short(key)!r}")
    if "version" in sections:
        version_node = sections["version"][1]
        version = _scalar(parsed, loader, version_node)
        if version is not _UNREADABLE and (type(version) is not int or version != 1):
            parsed.find(version_node, "unsupported catalogue version (expected 1)")
    if "domains" in sections:
        for name, key_node, value in _pairs(parsed, sections["domains"][1], "domains"):
            if not DOMAIN_PATTERN.fullmatch(name):
                parsed.find(key_node, f"bad domain name {_show(name)} (expected e.g. PAY)")
            info = _scalar(parsed, loader, value)
            parsed.domains[name] = dict(info) if isinstance(info, dict) else {}
    if "codes" not in sections:
        parsed.find(root, "missing 'codes' section")
        return parsed
    for code, key_node, value in _pairs(parsed, sections["codes"][1], "codes"):
        entry = _parse_code(parsed, loader, code, key_node, value, "domains" in sections)
        if entry is not None:
            parsed.codes[code] = entry
    return parsed


def _parse_code(
    parsed: _Parsed,
    loader: yaml.SafeLoader,
    code: str,
    key_node: yaml.Node,
    node: yaml.Node,
    check_domain: bool,
) -> ErrorCode | None:
    import yaml

    ok = True
    if not CODE_PATTERN.fullmatch(code):
        parsed.find(key_node, f"bad code format {_show(code)} (expected DOMAIN-NNN, e.g. PAY-012)")
        ok = False
    elif check_domain and code.split("-", 1)[0] not in parsed.domains:
        parsed.find(key_node, f"{code}: unknown domain {code.split('-', 1)[0]!r}")
        ok = False
    label = code if ok else _show(code)
    fields: dict[str, Any] = {}
    for name, name_node, value_node in _pairs(parsed, node, label):
        if name not in _CODE_FIELDS:
            parsed.find(name_node, f"{label}: unknown field {_show(name)}")
            ok = False
            continue
        value = _scalar(parsed, loader, value_node)
        if value is _UNREADABLE:
            ok = False  # reported by _scalar
            continue
        fields[name] = (value, value_node)
    if not isinstance(node, yaml.MappingNode):
        return None

    def bad(field_name: str, reason: str) -> None:
        nonlocal ok
        where = fields[field_name][1] if field_name in fields else key_node
        parsed.find(where, f"{label}: {reason}")
        ok = False

    message = fields.get("message", (None, None))[0]
    if not isinstance(message, str) or not message.strip():
        bad("message", "'message' is required and must be a non-empty string")
    severity = fields.get("severity", ("error", None))[0]
    if not isinstance(severity, str) or severity not in SEVERITIES:
        bad(
            "severity",
            f"unknown severity {_show(severity)} (expected one of {', '.join(SEVERITIES)})",
        )
    retryable = fields.get("retryable", (False, None))[0]
    if not isinstance(retryable, bool):
        bad("retryable", f"'retryable' must be true or false, not {_show(retryable)}")
    http_status = fields.get("http_status", (None, None))[0]
    if http_status is not None and (
        not isinstance(http_status, int)
        or isinstance(http_status, bool)
        or not 100 <= http_status <= 599
    ):
        bad("http_status", f"bad http_status {_show(http_status)} (expected an integer 100-599)")
    grpc_status = fields.get("grpc_status", (None, None))[0]
    if grpc_status is not None and (
        not isinstance(grpc_status, str) or grpc_status not in _GRPC_STATUSES
    ):
        bad("grpc_status", f"bad grpc_status {_show(grpc_status)} (expected a gRPC status name)")
    declared = fields.get("outcome", (None, None))[0]
    if declared is not None and declared not in OUTCOMES:
        bad("outcome", f"bad outcome {_show(declared)} (expected one of {', '.join(OUTCOMES)})")
    for text_field in ("description", "owner"):
        value = fields.get(text_field, (None, None))[0]
        if value is not None and not isinstance(value, str):
            bad(text_field, f"{text_field!r} must be a string")
    for text_field in ("message", "description", "owner"):
        value = fields.get(text_field, (None, None))[0]
        problem = _text_problem(value) if isinstance(value, str) else None
        if problem is not None:
            bad(text_field, f"{text_field!r} {problem}")
    if not ok:
        return None
    owner = fields.get("owner", (None, None))[0]
    if owner is None:
        inherited = parsed.domains.get(code.split("-", 1)[0], {}).get("owner")
        owner = inherited if isinstance(inherited, str) and not _text_problem(inherited) else None
    return ErrorCode(
        code=code,
        message=str(message),
        severity=str(severity),
        retryable=bool(retryable),
        http_status=http_status,
        grpc_status=grpc_status,
        description=fields.get("description", (None, None))[0],
        owner=owner,
        source=f"{parsed.path}:{key_node.start_mark.line + 1}",
        declared_outcome=declared,
    )


def _read(path: str | Path) -> _Parsed:
    """Read and parse one file, refusing what cannot be a catalogue before parsing it."""
    name = str(path)
    parsed = _Parsed(name)
    try:
        data = _read_capped(path, MAX_CATALOGUE_BYTES + 1)
    except OSError as exc:
        return parsed.fail(1, f"cannot read: {exc.strerror or exc}")
    if len(data) > MAX_CATALOGUE_BYTES:
        return parsed.fail(
            1, f"larger than {MAX_CATALOGUE_BYTES >> 20} MiB: not read (a catalogue is a few KiB)"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return parsed.fail(line, f"cannot read: not UTF-8 text (byte {exc.start + 1})")
    return _parse_text(text, name)


def _read_capped(path: str | Path, limit: int) -> bytes:
    """At most ``limit`` bytes of ``path``, in blocks (a pipe or /dev/zero cannot run away)."""
    blocks: list[bytes] = []
    size = 0
    with open(path, "rb") as handle:
        while size < limit:
            block = handle.read(min(1 << 16, limit - size))
            if not block:
                break
            blocks.append(block)
            size += len(block)
    return b"".join(blocks)


#: The packaged catalogue already parsed, which :func:`default_catalogue` reads at start-up
#: instead of the YAML (PyYAML alone is ~15 ms to import, a tenth of ``configure()``). It names
#: the SHA-256 of the YAML it was made from: one that does not match the YAML beside it (edited,
#: not regenerated with ``make catalogue-snapshot``) is ignored and the YAML is parsed.
_SNAPSHOT_NAME = "errorcodes.parsed.json"
#: How the packaged file is named in sources and findings.
_PACKAGED_PATH = "otelfin/errorcodes.yaml"


@functools.cache  # a memo: the packaged file never changes while the process runs
def default_catalogue() -> Catalogue:
    """The catalogue packaged with otelfin (``otelfin/errorcodes.yaml``), loaded once."""
    package = resources.files("otelfin")
    text = package.joinpath("errorcodes.yaml").read_text("utf-8")
    loaded = _from_snapshot(package.joinpath(_SNAPSHOT_NAME), text)
    if loaded is not None:
        return loaded
    parsed = _parse_text(text, _PACKAGED_PATH, packaged=True)
    if parsed.findings:  # pragma: no cover - guarded by the test-suite
        raise CatalogueError(parsed.findings)
    return Catalogue(parsed.codes, parsed.domains, (parsed.path,))


def _yaml_digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _from_snapshot(snapshot: Any, text: str) -> Catalogue | None:
    """The catalogue in ``snapshot`` (a path) when it was made from ``text``, else None."""
    import json

    try:
        data = json.loads(snapshot.read_text("utf-8"))
        if data.get("yaml_sha256") != _yaml_digest(text):
            return None
        codes = {code: ErrorCode(**fields) for code, fields in data["codes"].items()}
        return Catalogue(codes, data["domains"], (data["path"],))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None  # missing or unreadable: the YAML is parsed, as without a snapshot


def _snapshot_json(text: str) -> str:
    """The text of ``errorcodes.parsed.json`` for the packaged YAML ``text``."""
    import dataclasses
    import json

    parsed = _parse_text(text, _PACKAGED_PATH)
    if parsed.findings:
        raise CatalogueError(parsed.findings)
    data = {
        "yaml_sha256": _yaml_digest(text),
        "path": parsed.path,
        "domains": parsed.domains,
        "codes": {code: dataclasses.asdict(entry) for code, entry in parsed.codes.items()},
    }
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def _write_snapshot() -> Path:
    """Write ``otelfin/errorcodes.parsed.json`` from ``otelfin/errorcodes.yaml`` (run by
    ``make catalogue-snapshot`` after the YAML changes; a test fails until it is)."""
    package = resources.files("otelfin")
    text = package.joinpath("errorcodes.yaml").read_text("utf-8")
    target = Path(str(package.joinpath(_SNAPSHOT_NAME)))
    target.write_text(_snapshot_json(text), encoding="utf-8")
    return target


class CatalogueSlot:
    """Where a pillar keeps the catalogue ``configure()`` handed it (its ``install_pillar``
    calls :meth:`use`); :meth:`current` is that one, or the packaged default before it."""

    __slots__ = ("given",)

    def __init__(self) -> None:
        self.given: Catalogue | None = None

    def use(self, catalogue: Catalogue | None) -> None:
        """Hold ``catalogue`` (None: back to the packaged default)."""
        self.given = catalogue

    def current(self) -> Catalogue:
        """The catalogue handed over, or the packaged default."""
        given = self.given
        return given if given is not None else default_catalogue()


def load_catalogue(*paths: str | Path, include_default: bool = True) -> Catalogue:
    """Load catalogue files, later files overriding earlier ones, over the packaged default.

    Raises :class:`CatalogueError` naming ``file:line`` for every problem found.
    """
    catalogue = default_catalogue() if include_default else Catalogue()
    findings: list[Finding] = []
    for path in paths:
        parsed = _read(path)
        findings.extend(parsed.findings)
        catalogue = catalogue.merged(Catalogue(parsed.codes, parsed.domains, (parsed.path,)))
    if findings:
        raise CatalogueError(findings)
    return catalogue


def lint_files(paths: Iterable[str | Path]) -> list[Finding]:
    """Every finding in the given catalogue files (duplicates across files included)."""
    findings: list[Finding] = []
    first_seen: dict[str, str] = {}
    for path in paths:
        parsed = _read(path)
        findings.extend(parsed.findings)
        for code, entry in parsed.codes.items():
            if code in first_seen:
                line = int(entry.source.rsplit(":", 1)[1])
                reason = f"duplicate code {code} (also at {first_seen[code]})"
                findings.append(Finding(parsed.path, line, reason))
            else:
                first_seen[code] = entry.source
    return findings
