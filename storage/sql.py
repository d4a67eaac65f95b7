"""SQL text handling shared by both engines: placeholder translation, script splitting, dialects.

Code in `storage/` writes one dialect: SQLite-flavoured SQL with `?` placeholders. PostgreSQL
(psycopg) wants `%s` placeholders and treats every `%` in the query text as special, including
inside string literals, so translation must double each `%` and only turn `?` into `%s` where
it is not inside a literal, a quoted identifier or a comment.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_SCHEMA_TOKEN = re.compile(r"\{\{(\w+)\}\}")


def check_identifier(name: str) -> str:
    """Return `name` unchanged if it is a plain SQL identifier, so it can be pasted into SQL."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return name


def _scan(sql: str, *, dollar_quotes: bool) -> list[tuple[str, str]]:
    """Split SQL text into ("code" | "quoted", text) runs.

    Quoted runs are string literals (plain, E'' escape strings and, for PostgreSQL, dollar quotes),
    quoted identifiers and comments: the places where `?` and `;` are not syntax.
    """
    runs: list[tuple[str, str]] = []
    code_start = 0
    i = 0
    n = len(sql)

    def flush_code(end: int) -> None:
        if end > code_start:
            runs.append(("code", sql[code_start:end]))

    while i < n:
        ch = sql[i]
        end = -1
        if ch == "'":
            escape_string = (
                i > 0 and sql[i - 1] in "eE" and (i < 2 or not (sql[i - 2].isalnum() or sql[i - 2] == "_"))
            )
            j = i + 1
            while j < n:
                if escape_string and sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == "'":
                    if j + 1 < n and sql[j + 1] == "'":
                        j += 2
                        continue
                    break
                j += 1
            end = min(j + 1, n)
        elif ch == '"':
            j = sql.find('"', i + 1)
            while j != -1 and j + 1 < n and sql[j + 1] == '"':
                j = sql.find('"', j + 2)
            end = n if j == -1 else j + 1
        elif ch == "-" and sql.startswith("--", i):
            j = sql.find("\n", i)
            end = n if j == -1 else j + 1
        elif ch == "/" and sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            end = n if j == -1 else j + 2
        elif ch == "$" and dollar_quotes and (i == 0 or not (sql[i - 1].isalnum() or sql[i - 1] == "_")):
            m = _DOLLAR_TAG.match(sql, i)
            if m:
                j = sql.find(m.group(0), m.end())
                end = n if j == -1 else j + len(m.group(0))
        if end == -1:
            i += 1
            continue
        flush_code(i)
        runs.append(("quoted", sql[i:end]))
        i = code_start = end
    flush_code(n)
    return runs


@functools.lru_cache(maxsize=4096)
def to_pyformat(sql: str) -> str:
    """Translate `?` placeholders to psycopg's `%s`, escaping every literal `%`."""
    out = []
    for kind, text in _scan(sql, dollar_quotes=True):
        text = text.replace("%", "%%")
        if kind == "code":
            text = text.replace("?", "%s")
        out.append(text)
    return "".join(out)


def split_script_postgres(script: str) -> list[str]:
    """Split a PostgreSQL script into statements on `;` outside literals, comments and dollar quotes."""
    statements: list[str] = []
    current: list[str] = []
    for kind, text in _scan(script, dollar_quotes=True):
        if kind == "quoted":
            current.append(text)
            continue
        *complete, rest = text.split(";")
        for piece in complete:
            current.append(piece)
            statements.append("".join(current))
            current = []
        current.append(rest)
    statements.append("".join(current))
    return [s.strip() for s in statements if _has_code(s)]


def split_script_sqlite(script: str) -> list[str]:
    """Split a SQLite script into statements, using SQLite's own idea of completeness.

    `sqlite3.complete_statement` understands literals, comments and `CREATE TRIGGER ... END;`
    bodies, which a naive split on `;` would cut apart.
    """
    statements: list[str] = []
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            statements.append(buffer)
            buffer = ""
    statements.append(buffer)
    return [s.strip().removesuffix(";").strip() for s in statements if _has_code(s.rstrip(";"))]


def _has_code(statement: str) -> bool:
    return any(
        kind == "code" and text.strip(" \t\r\n;") for kind, text in _scan(statement, dollar_quotes=False)
    )


@dataclass(frozen=True)
class Dialect:
    """What differs between the two engines, kept as data plus a few SQL-fragment builders."""

    name: str
    # `{{TOKEN}}` substitutions available to schema files, so one file can serve both engines.
    schema_tokens: dict[str, str] = field(default_factory=dict)

    @property
    def is_postgres(self) -> bool:
        return self.name == "postgres"

    def translate(self, sql: str) -> str:
        """Turn code-dialect SQL (`?` placeholders) into what this engine's driver expects."""
        return to_pyformat(sql) if self.is_postgres else sql

    def split_script(self, script: str) -> list[str]:
        return split_script_postgres(script) if self.is_postgres else split_script_sqlite(script)

    def render_schema(self, script: str) -> str:
        """Replace `{{TOKEN}}` markers in a schema file; an unknown token is an error, not a no-op."""

        def replace(m: re.Match[str]) -> str:
            token = m.group(1)
            if token not in self.schema_tokens:
                raise ValueError(f"unknown schema token {{{{{token}}}}} for {self.name}")
            return self.schema_tokens[token]

        return _SCHEMA_TOKEN.sub(replace, script)

    def in_list(self, column: str, values: Sequence[object]) -> tuple[str, tuple[object, ...]]:
        """A `column IN (...)` condition and its parameters; PostgreSQL gets one array parameter."""
        check_identifier(column)
        values = list(values)
        if not values:
            return "1 = 0", ()
        if self.is_postgres:
            return f"{column} = ANY(?)", (values,)
        return f"{column} IN ({', '.join('?' * len(values))})", tuple(values)

    def greatest(self, *expressions: str) -> str:
        """The scalar maximum of SQL expressions (SQLite spells GREATEST as a multi-argument MAX)."""
        function = "GREATEST" if self.is_postgres else "MAX"
        return f"{function}({', '.join(expressions)})"

    def least(self, *expressions: str) -> str:
        function = "LEAST" if self.is_postgres else "MIN"
        return f"{function}({', '.join(expressions)})"


SQLITE = Dialect(
    "sqlite",
    {
        # A rowid alias: 64-bit, and AUTOINCREMENT keeps ids of deleted rows from being reused.
        "AUTO_ID": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "BLOB": "BLOB",
    },
)

POSTGRES = Dialect(
    "postgres",
    {
        "AUTO_ID": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        "BLOB": "BYTEA",
    },
)
