"""Checks on what clients send, before any of it reaches storage.

Integers: only the spec's safe range (what a JSON double holds exactly) is accepted.

Both database engines store 64-bit integers, SQLite refuses anything wider, and JSON
clients cannot represent anything past 2^53 exactly, so every integer taken from a request
(query parameter, path part, token, JSON body) is checked against this one range.

Strings: U+0000 is refused everywhere (PostgreSQL text cannot hold it, and one rule at the
edge keeps both engines alike).
"""

from __future__ import annotations

import re
from typing import Any

from homeserver.errors import MatrixError, bad_json, invalid_param

MIN_SAFE_INT = -(2**53) + 1
MAX_SAFE_INT = 2**53 - 1

# ASCII digits only: int() alone also takes '_', spaces, '+' and non-ASCII digits.
_INT_TEXT = re.compile(r"-?[0-9]{1,16}")


def is_safe_int(value: Any) -> bool:
    """An int (not a bool) inside the safe range."""
    return isinstance(value, int) and not isinstance(value, bool) and MIN_SAFE_INT <= value <= MAX_SAFE_INT


def parse_int_text(text: str, name: str, *, minimum: int = MIN_SAFE_INT, errcode: str = "M_INVALID_PARAM",
                   status: int = 400) -> int:
    """A decimal integer in the safe range from `text`; otherwise `status errcode` naming `name`."""
    if not _INT_TEXT.fullmatch(text):
        raise MatrixError(status, errcode, f"{name}: must be an integer between {MIN_SAFE_INT} and {MAX_SAFE_INT}")
    value = int(text)
    if not MIN_SAFE_INT <= value <= MAX_SAFE_INT:
        raise MatrixError(status, errcode, f"{name}: must be an integer between {MIN_SAFE_INT} and {MAX_SAFE_INT}")
    if value < minimum:
        raise MatrixError(status, errcode, f"{name}: must be at least {minimum}")
    return value


def check_json_int(value: Any, name: str, *, minimum: int = MIN_SAFE_INT) -> int:
    """A JSON body value that must be an integer in the safe range; `400 M_INVALID_PARAM` naming it."""
    if not is_safe_int(value):
        raise invalid_param(f"{name}: must be an integer between {MIN_SAFE_INT} and {MAX_SAFE_INT}")
    if value < minimum:
        raise invalid_param(f"{name}: must be at least {minimum}")
    return value


def check_json_value(value: Any) -> None:
    """Refuse what no store can hold: numbers past the safe integer range and U+0000 in strings.

    Numbers: `400 M_INVALID_PARAM`; NUL in a key or string: `400 M_BAD_JSON`; each naming
    where in the body it was found.
    """
    if _acceptable(value):
        return
    # Only a refused body pays for tracking paths.
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        kind = type(item)
        if kind is dict:
            for key, child in item.items():
                if "\x00" in key:
                    raise bad_json(f"{_json_path(path + (key,))}: keys must not contain U+0000")
                stack.append((child, path + (key,)))
        elif kind is list:
            stack.extend((child, path + (i,)) for i, child in enumerate(item))
        elif kind is str:
            if "\x00" in item:
                raise bad_json(f"{_json_path(path)}: strings must not contain U+0000")
        elif kind is int or kind is float:
            if not MIN_SAFE_INT <= item <= MAX_SAFE_INT:
                raise invalid_param(f"{_json_path(path)}: numbers must be between {MIN_SAFE_INT} and {MAX_SAFE_INT}")


def _acceptable(value: Any) -> bool:
    stack = [value]
    pop, push, extend = stack.pop, stack.append, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is str:
            if "\x00" in item:
                return False
        elif kind is dict:
            for key, child in item.items():
                if "\x00" in key:
                    return False
                push(child)
        elif kind is list:
            extend(item)
        elif kind is int or kind is float:
            if not MIN_SAFE_INT <= item <= MAX_SAFE_INT:
                return False
    return True


def _json_path(path: tuple[str | int, ...]) -> str:
    if not path:
        return "body"
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
