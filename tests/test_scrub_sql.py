"""Secret literals in SQL statements on database spans are redacted by column or clause."""

from __future__ import annotations

import pytest

from otelfin.scrub import scrub_attributes
from otelfin.scrub._sql import redact_sql_secrets

R = "'[REDACTED]'"


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("ALTER ROLE app PASSWORD 'hunter2'", f"ALTER ROLE app PASSWORD {R}"),
        ("create user app with password 'it''s'", f"create user app with password {R}"),
        ("CREATE USER x IDENTIFIED BY 'pw'", f"CREATE USER x IDENTIFIED BY {R}"),
        ("UPDATE cards SET cvv = '123' WHERE id = 7", f"UPDATE cards SET cvv = {R} WHERE id = 7"),
        ("SELECT 1 FROM u WHERE pin=1234", f"SELECT 1 FROM u WHERE pin={R}"),
        ("SELECT 1 FROM u WHERE \"api_key\" <> 'k'", f'SELECT 1 FROM u WHERE "api_key" <> {R}'),
        (
            "INSERT INTO u (name, password, cvv) VALUES ('a', 'p1', 123), ('b', 'p2', '4')",
            f"INSERT INTO u (name, password, cvv) VALUES ('a', {R}, {R}), ('b', {R}, {R})",
        ),
        (
            "insert into s.u (\"Password\", n) values (E'p''w', 'n')",
            f"insert into s.u (\"Password\", n) values ({R}, 'n')",
        ),
    ],
)
def test_secret_literals_are_redacted(statement: str, expected: str) -> None:
    """Passwords, CVVs, PINs and keys given as literals are replaced, the rest is kept."""
    assert redact_sql_secrets(statement) == expected


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT 1",
        "INSERT INTO u (password) VALUES (%s)",
        "INSERT INTO u (password, name) VALUES ($1, $2)",
        "UPDATE u SET password = :password WHERE id = ?",
        "INSERT INTO u (password) VALUES (crypt('x', gen_salt('bf')))",
        "UPDATE u SET note = 'cvv = 1 is not a column here'",
        "SELECT id FROM u WHERE name = 'password'",
    ],
)
def test_placeholders_expressions_and_plain_columns_stay(statement: str) -> None:
    """Placeholders, function calls and literals of plain columns are untouched (same object)."""
    assert redact_sql_secrets(statement) is statement


def test_statement_attributes_only() -> None:
    """db.statement and db.query.text are read as SQL; other attributes keep their text
    (free-text rules only: a ``cvv = '123'`` pair is redacted anywhere, SQL clauses are not)."""
    attributes = {
        "db.statement": "UPDATE c SET cvv = '123'",
        "db.query.text": "INSERT INTO c (pan, note) VALUES ('4111 1111 1111 1111', 'n')",
        "note": "ALTER USER bob IDENTIFIED BY 'hunter2'",
    }
    assert scrub_attributes(attributes) == {
        "db.statement": f"UPDATE c SET cvv = {R}",
        "db.query.text": f"INSERT INTO c (pan, note) VALUES ({R}, 'n')",
        "note": "ALTER USER bob IDENTIFIED BY 'hunter2'",
    }


def test_card_literal_in_a_plain_column_is_masked() -> None:
    """A card number in a column with a plain name is still masked by the PAN scanner."""
    out = scrub_attributes({"db.statement": "INSERT INTO t (note) VALUES ('4111111111111111')"})
    assert out == {"db.statement": "INSERT INTO t (note) VALUES ('XXXXXXXXXXXX1111')"}
