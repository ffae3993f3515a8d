"""Secrets written into SQL statements as literals (``db.statement`` / ``db.query.text``).

Card numbers in a statement are found by the PAN scanner like in any text. A password or CVV
is not recognisable by its value, only by the column or clause it belongs to, so for the
statement attributes of database spans the literal is redacted when it is

* the password of ``CREATE/ALTER ROLE|USER ... PASSWORD '...'`` or ``IDENTIFIED BY '...'``;
* compared with or assigned to a secret-named column: ``cvv = '123'``, ``SET pin = 1234``,
  ``"api_key" <> 'x'`` (the same key names as everywhere: :func:`is_secret_key`);
* in ``INSERT INTO t (c1, c2) VALUES (v1, v2), (...)`` at the position of a secret column.

Only literals are touched (quoted strings and numbers); placeholders (``%s``, ``$1``, ``?``,
``:name``), expressions and identifiers stay, so the statement still says what it did.
"""

from __future__ import annotations

import functools
import re

from otelfin.scrub._options import ScrubOptions
from otelfin.scrub._secrets import REDACTED, is_secret_key

__all__ = ["SQL_KEYS", "redact_sql_secrets"]

#: The span attributes that hold a statement.
SQL_KEYS = frozenset({"db.statement", "db.query.text"})

_STRING = r"(?:[EeNn]?'(?:[^']|'')*')"
_NUMBER = r"(?:[-+]?\d+(?:\.\d+)?)"
_LITERAL = rf"(?:{_STRING}|{_NUMBER})"
_IDENT = r'(?:"(?:[^"]|"")+"|`[^`]+`|\[[^\]]+\]|[A-Za-z_][A-Za-z0-9_$]*)'
#: The cheap test every statement gets: without one of these words there is nothing to redact.
_HINT = re.compile(r"(?i)password|identified|=|<>|values")
_QUOTED = f"'{REDACTED}'"


class _Patterns:
    """The statement patterns, compiled by the first statement that passes :data:`_HINT`.

    Compiling them took ~1 ms of ``configure()`` (which imports this module with the
    scrubber) in every service, most of which never record a statement; the first database
    span's scrub pays it instead, on the export thread unless spans are scrubbed as they end.
    """

    __slots__ = ("compared", "insert", "literal", "password")

    def __init__(self) -> None:
        self.password = re.compile(rf"(?i)\b(PASSWORD|IDENTIFIED\s+BY)(\s+)({_STRING})")
        self.compared = re.compile(rf"({_IDENT})(\s*(?:=|<>|!=)\s*)({_LITERAL})")
        self.insert = re.compile(
            rf"(?is)\bINSERT\s+INTO\s+{_IDENT}(?:\s*\.\s*{_IDENT})*\s*\(([^()]*)\)\s*VALUES\s*"
        )
        self.literal = re.compile(_LITERAL)


@functools.cache
def _patterns() -> _Patterns:
    return _Patterns()


def _name(identifier: str) -> str:
    if identifier[:1] in '"`[':
        return identifier[1:-1]
    return identifier


def _redact_compared(match: re.Match[str], opts: ScrubOptions | None) -> str:
    if not is_secret_key(_name(match.group(1)), opts):
        return match.group(0)
    return f"{match.group(1)}{match.group(2)}{_QUOTED}"


def _split_values(text: str, start: int) -> tuple[list[tuple[int, int]], int] | None:
    """The spans of the top-level items of the tuple opening at ``text[start] == "("``."""
    items: list[tuple[int, int]] = []
    depth, i, item = 0, start, start + 1
    while i < len(text):
        char = text[i]
        if char == "'":
            end = text.find("'", i + 1)
            while end != -1 and text[end + 1 : end + 2] == "'":
                end = text.find("'", end + 2)
            if end == -1:
                return None
            i = end
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                items.append((item, i))
                return items, i + 1
        elif char == "," and depth == 1:
            items.append((item, i))
            item = i + 1
        i += 1
    return None


def _redact_insert(statement: str, opts: ScrubOptions | None) -> str:
    patterns = _patterns()
    match = patterns.insert.search(statement)
    if match is None:
        return statement
    columns = [_name(c.strip()) for c in match.group(1).split(",")]
    secret = {i for i, column in enumerate(columns) if column and is_secret_key(column, opts)}
    if not secret:
        return statement
    out: list[str] = []
    position = match.end()
    last = 0
    while position < len(statement) and statement[position] == "(":
        split = _split_values(statement, position)
        if split is None:
            break
        items, position = split
        for index, (begin, end) in enumerate(items):
            value = statement[begin:end].strip()
            if index in secret and patterns.literal.fullmatch(value):
                out.append(statement[last:begin])
                out.append(statement[begin:end].replace(value, _QUOTED, 1))
                last = end
        rest = re.match(r"\s*,\s*", statement[position:])
        if rest is None:
            break
        position += rest.end()
    if not out:
        return statement
    out.append(statement[last:])
    return "".join(out)


def redact_sql_secrets(statement: str, options: ScrubOptions | None = None) -> str:
    """``statement`` with secret literals replaced by ``'[REDACTED]'``; the same object when
    there were none."""
    if not _HINT.search(statement):
        return statement
    patterns = _patterns()
    text = patterns.password.sub(lambda m: f"{m.group(1)}{m.group(2)}{_QUOTED}", statement)
    text = patterns.compared.sub(lambda m: _redact_compared(m, options), text)
    text = _redact_insert(text, options)
    return statement if text == statement else text
