"""Assertions used by cases; each failure message names the request and what was wrong."""

from __future__ import annotations

from typing import Any

from synctest import schema
from synctest.client import Response
from synctest.registry import CaseFailure

ERROR_SCHEMA = "api/client-server/definitions/errors/error.yaml"


def expect(condition: Any, message: str) -> None:
    if not condition:
        raise CaseFailure(message)


def _snippet(response: Response) -> str:
    return response.body[:300].decode("utf-8", "replace")


def expect_status(response: Response, *statuses: int) -> None:
    if response.status not in statuses:
        wanted = " or ".join(map(str, statuses))
        raise CaseFailure(f"{response.describe()}, expected {wanted}: {_snippet(response)}")


def expect_json_content_type(response: Response) -> None:
    content_type = response.headers.get("Content-Type", "")
    expect(
        content_type.split(";")[0].strip().lower() == "application/json",
        f"{response.describe()}: Content-Type is {content_type!r}, expected application/json",
    )


def expect_error(response: Response, status: int, errcode: str) -> dict[str, Any]:
    """The response is a standard Matrix error with this status and errcode."""
    expect_status(response, status)
    body = response.json
    _validate(lambda: schema.validate_against_file(ERROR_SCHEMA, body), response)
    expect(
        body.get("errcode") == errcode,
        f"{response.describe()}: errcode {body.get('errcode')!r}, expected {errcode!r}",
    )
    return body


def expect_schema(response: Response, path_template: str) -> Any:
    """The body matches the spec's schema for this method, path and status; returns it."""
    body = response.json
    _validate(
        lambda: schema.validate_response(response.method, path_template, response.status, body), response
    )
    return body


def _validate(check: Any, response: Response) -> None:
    try:
        check()
    except (schema.SchemaViolation, schema.SpecError) as error:
        raise CaseFailure(f"{response.describe()}: {error}") from None


def header_tokens(response: Response, name: str) -> set[str]:
    """A comma-separated header's values, lower-cased, across repeated header lines."""
    tokens: set[str] = set()
    for value in response.headers.getall(name, []):
        tokens.update(part.strip().lower() for part in value.split(",") if part.strip())
    return tokens
