"""SQL text handling: placeholder translation, script splitting, dialect helpers."""

from __future__ import annotations

import pytest

from storage import Database
from storage.sql import (
    POSTGRES,
    SQLITE,
    check_identifier,
    split_script_postgres,
    split_script_sqlite,
    to_pyformat,
)


@pytest.mark.parametrize(
    ("code_sql", "psycopg_sql"),
    [
        ("SELECT a FROM t WHERE b = ? AND c = ?", "SELECT a FROM t WHERE b = %s AND c = %s"),
        ("SELECT '?' , ?", "SELECT '?' , %s"),
        ("SELECT 'it''s ?', ?", "SELECT 'it''s ?', %s"),
        ("SELECT E'\\' ?', ?", "SELECT E'\\' ?', %s"),
        ('SELECT "odd?name" FROM t WHERE x = ?', 'SELECT "odd?name" FROM t WHERE x = %s'),
        ("SELECT 1 -- why?\n, ?", "SELECT 1 -- why?\n, %s"),
        ("SELECT /* ? */ ?", "SELECT /* ? */ %s"),
        ("SELECT $$ ? $$, $tag$ ?'$tag$, ?", "SELECT $$ ? $$, $tag$ ?'$tag$, %s"),
        ("SELECT '100%' || ?", "SELECT '100%%' || %s"),
        ("SELECT 5 % ?", "SELECT 5 %% %s"),
        ("SELECT '%s'", "SELECT '%%s'"),
    ],
)
def test_question_marks_outside_literals_become_psycopg_placeholders(code_sql: str, psycopg_sql: str) -> None:
    assert to_pyformat(code_sql) == psycopg_sql


def test_sqlite_sql_is_passed_through_untouched() -> None:
    sql = "SELECT '100%', ? FROM t"
    assert SQLITE.translate(sql) is sql


def test_sqlite_scripts_split_on_statement_ends_but_not_inside_literals_or_triggers() -> None:
    script = """
        CREATE TABLE a (x TEXT DEFAULT ';');  -- a comment; with a semicolon
        CREATE TRIGGER t AFTER INSERT ON a BEGIN
            UPDATE a SET x = 'y;z';
            DELETE FROM a WHERE x = ';';
        END;
        /* trailing; comment */
    """
    statements = split_script_sqlite(script)
    assert len(statements) == 2
    assert statements[0].startswith("CREATE TABLE a")
    # A comment between statements travels with the following one, which SQLite accepts.
    assert "CREATE TRIGGER t" in statements[1] and statements[1].endswith("END")


def test_postgres_scripts_split_on_statement_ends_but_not_inside_dollar_quotes() -> None:
    script = """
        CREATE TABLE a (x TEXT DEFAULT ';');
        CREATE FUNCTION f() RETURNS int AS $body$ BEGIN RETURN 1; END; $body$ LANGUAGE plpgsql;
        -- only a comment;
    """
    statements = split_script_postgres(script)
    assert len(statements) == 2
    assert "RETURN 1; END;" in statements[1]


@pytest.mark.parametrize("name", ["users", "_x", "room_id2"])
def test_plain_identifiers_are_accepted(name: str) -> None:
    assert check_identifier(name) == name


@pytest.mark.parametrize("name", ["", "1abc", "a b", "x; DROP TABLE users", 'a"b', "t.c"])
def test_identifiers_that_could_smuggle_sql_are_rejected(name: str) -> None:
    with pytest.raises(ValueError):
        check_identifier(name)


def test_in_list_expands_placeholders_for_sqlite_and_uses_one_array_for_postgres() -> None:
    assert SQLITE.in_list("room_id", ["!a", "!b"]) == ("room_id IN (?, ?)", ("!a", "!b"))
    assert POSTGRES.in_list("room_id", ["!a", "!b"]) == ("room_id = ANY(?)", (["!a", "!b"],))
    assert SQLITE.in_list("room_id", []) == ("1 = 0", ())


def test_schema_tokens_are_substituted_and_unknown_ones_are_errors() -> None:
    assert POSTGRES.render_schema("id {{AUTO_ID}}, b {{BLOB}}").endswith("b BYTEA")
    assert "AUTOINCREMENT" in SQLITE.render_schema("id {{AUTO_ID}}")
    with pytest.raises(ValueError, match="NOPE"):
        SQLITE.render_schema("x {{NOPE}}")


async def test_literal_question_marks_and_percent_signs_survive_a_round_trip(db: Database) -> None:
    row = await db.fetch_one("literals", "SELECT '?', '100%', ? || '%', 7 % 4", ("50",))
    assert row == ("?", "100%", "50%", 3)


async def test_in_list_finds_exactly_the_listed_rows(db: Database) -> None:
    for user in ["@a:x", "@b:x", "@c:x"]:
        await db.simple_insert("users", {"user_id": user, "created_ts": 0})

    async def pick(txn, wanted):
        clause, params = txn.dialect.in_list("user_id", wanted)
        return await txn.fetch_all(f"SELECT user_id FROM users WHERE {clause} ORDER BY user_id", params)

    assert await db.run_interaction("pick", pick, ["@a:x", "@c:x", "@z:x"], write=False) == [
        ("@a:x",),
        ("@c:x",),
    ]
    assert await db.run_interaction("pick", pick, [], write=False) == []


async def test_greatest_picks_the_larger_value_on_both_engines(db: Database) -> None:
    assert await db.fetch_value("greatest", f"SELECT {db.dialect.greatest('?', '?')}", (3, 9)) == 9
    assert await db.fetch_value("least", f"SELECT {db.dialect.least('?', '?')}", (3, 9)) == 3
