"""Canonical JSON (appendices: "Canonical JSON") and the v6+ strictness check.

Encoding is delegated to `canonicaljson`, the library Synapse uses, so that hashes and
signatures over the same Python value come out byte-identical to Synapse's. That
includes its treatment of floats (encoded as Python writes them) in room versions 1-5,
which the spec tolerates ("Servers SHOULD be capable of handling JSON which is
considered invalid by these restrictions").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from canonicaljson import encode_canonical_json as _encode

# The spec's integer range: what an IEEE double represents exactly.
MIN_SAFE_INTEGER = -(2**53) + 1
MAX_SAFE_INTEGER = 2**53 - 1


class CanonicalJsonError(ValueError):
    """A value cannot be encoded as strict canonical JSON; `path` locates it."""

    def __init__(self, reason: str, path: tuple[str | int, ...] = ()):
        self.reason = reason
        self.path = path
        super().__init__(f"{reason} at {format_path(path)}" if path else reason)

    @property
    def path_str(self) -> str:
        return format_path(self.path)


def format_path(path: tuple[str | int, ...]) -> str:
    """`content.body[3].x` style rendering of a key path (for error messages)."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        else:
            out.append(("." if out else "") + part)
    return "".join(out) or "<root>"


def encode_canonical_json(value: Any) -> bytes:
    """The canonical JSON encoding of `value` as UTF-8 bytes (Synapse-compatible)."""
    return _encode(value)


def check_strict_canonical_json(value: Any) -> None:
    """Raise CanonicalJsonError unless `value` obeys the v6+ rules.

    Rejects floats (including NaN and the infinities Python's json module happily
    parses), integers outside [-(2**53)+1, 2**53-1], and non-string object keys. The
    error names the dotted key path of the first offender.
    """
    _check(value)


def _check(value: Any) -> None:
    # Recursion carries no path so the common (valid) case allocates nothing; the path
    # is rebuilt while the exception unwinds.
    t = type(value)
    if t is str or t is bool or value is None:
        return
    if t is int:
        if value < MIN_SAFE_INTEGER or value > MAX_SAFE_INTEGER:
            raise CanonicalJsonError(f"integer {value} is outside the range [-(2**53)+1, (2**53)-1]")
        return
    if t is dict or isinstance(value, Mapping):
        for k, v in value.items():
            if type(k) is not str:
                raise CanonicalJsonError(f"object key {k!r} is not a string")
            try:
                _check(v)
            except CanonicalJsonError as e:
                e.path = (k, *e.path)
                e.args = (f"{e.reason} at {format_path(e.path)}",)
                raise
        return
    if t is list or t is tuple:
        for i, v in enumerate(value):
            try:
                _check(v)
            except CanonicalJsonError as e:
                e.path = (i, *e.path)
                e.args = (f"{e.reason} at {format_path(e.path)}",)
                raise
        return
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise CanonicalJsonError(f"{value!r} is not a valid JSON number")
        raise CanonicalJsonError(f"float {value!r} is not allowed (only integers)")
    if isinstance(value, int) and not isinstance(value, bool):  # int subclasses, e.g. IntEnum
        _check(int(value))
        return
    raise CanonicalJsonError(f"value of type {t.__name__} is not JSON")


def normalise_integral_floats(value: Any) -> Any:
    """A copy of `value` where floats with an integral value in the safe range are ints.

    The spec's canonical form writes `1e10` as `10000000000` and `-0` as `0`. Use this on
    JSON we author (never on received events: Synapse hashes such floats as parsed, so
    normalising them would change the hashes of genuine events).
    """
    t = type(value)
    if t is float:
        if value.is_integer() and MIN_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return int(value)
        return value
    if t is dict:
        return {k: normalise_integral_floats(v) for k, v in value.items()}
    if t is list:
        return [normalise_integral_floats(v) for v in value]
    return value
