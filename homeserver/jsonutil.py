"""The one fast JSON encoder/decoder for everything that is not canonical JSON.

orjson is several times faster than the stdlib on /sync-sized payloads, rejects
NaN/Infinity and invalid UTF-8 on input, and never emits them on output. Canonical
JSON (hashes, signatures, federation) goes through `canonicaljson` instead.
"""

from __future__ import annotations

from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError
# JSON already encoded, which `encode` copies into its output as it is.
Fragment = orjson.Fragment


def encode(value: Any) -> bytes:
    return orjson.dumps(value)


def encode_kept(value: Any) -> bytes:
    """`encode` for bytes held for long (cache entries, cache keys): orjson's result keeps the 4 KiB
    buffer it was written into whatever its length, so a copy the size of the JSON is kept instead."""
    return bytes(memoryview(orjson.dumps(value)))


def encode_str(value: Any) -> str:
    return orjson.dumps(value).decode("utf-8")


def decode(data: bytes | str) -> Any:
    return orjson.loads(data)
