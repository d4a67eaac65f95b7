"""The `Authorization: X-Matrix ...` header: signing outbound requests and parsing inbound ones
(server-server API, "Request Authentication")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from signedjson.types import SigningKey

from homeserver.events.signing import compute_json_signature, key_id_of


class XMatrixParseError(ValueError):
    """The header is not a well-formed X-Matrix authorization."""


@dataclass(frozen=True)
class XMatrixAuth:
    origin: str
    destination: str | None
    key: str
    sig: str


def request_signing_json(method: str, uri: str, origin: str, destination: str,
                         content: Any = None) -> dict[str, Any]:
    """The JSON object whose signature authenticates a request."""
    signed: dict[str, Any] = {"method": method, "uri": uri, "origin": origin, "destination": destination}
    if content is not None:
        signed["content"] = content
    return signed


def sign_request(origin: str, signing_key: SigningKey, destination: str, method: str, uri: str,
                 content: Any = None) -> str:
    """The `Authorization` header value for one request (`uri` is the path with any query string)."""
    sig = compute_json_signature(request_signing_json(method, uri, origin, destination, content), signing_key)
    # The compatible form: one space, lower-case names, quoted values, no spaces around commas.
    return f'X-Matrix origin="{origin}",destination="{destination}",key="{key_id_of(signing_key)}",sig="{sig}"'


_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _parse_params(text: str) -> dict[str, str]:
    """RFC 9110 auth-params: `name=value` pairs, comma separated, values tokens or quoted strings.
    Colons are tolerated in unquoted values, as older servers send them."""
    params: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t,":
            i += 1
        if i >= n:
            break
        start = i
        while i < n and text[i] in _TOKEN_CHARS:
            i += 1
        name = text[start:i].lower()
        if not name:
            raise XMatrixParseError(f"expected a parameter name at position {start}")
        while i < n and text[i] in " \t":
            i += 1
        if i >= n or text[i] != "=":
            raise XMatrixParseError(f"parameter {name!r} has no value")
        i += 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == '"':
            i += 1
            value = []
            while True:
                if i >= n:
                    raise XMatrixParseError(f"parameter {name!r}: unterminated quoted value")
                c = text[i]
                if c == "\\" and i + 1 < n:
                    value.append(text[i + 1])
                    i += 2
                    continue
                if c == '"':
                    i += 1
                    break
                value.append(c)
                i += 1
            params[name] = "".join(value)
        else:
            start = i
            while i < n and (text[i] in _TOKEN_CHARS or text[i] == ":"):
                i += 1
            if i == start:
                raise XMatrixParseError(f"parameter {name!r} has an empty value")
            params[name] = text[start:i]
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] != ",":
            raise XMatrixParseError(f"expected ',' after parameter {name!r}")
    return params


def parse_x_matrix(header: str) -> XMatrixAuth:
    """Parse an Authorization header value; XMatrixParseError naming what is wrong."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "x-matrix":
        raise XMatrixParseError("expected the X-Matrix authorization scheme")
    params = _parse_params(rest)
    for required in ("origin", "key", "sig"):
        if not params.get(required):
            raise XMatrixParseError(f"the {required} parameter is missing")
    return XMatrixAuth(params["origin"], params.get("destination"), params["key"], params["sig"])


def signed_request_json(auth: XMatrixAuth, method: str, uri: str, destination: str,
                        content: Any = None) -> Mapping[str, Any]:
    """The object the sender should have signed, with its claimed signature attached."""
    signed = request_signing_json(method, uri, auth.origin, destination, content)
    signed["signatures"] = {auth.origin: {auth.key: auth.sig}}
    return signed
