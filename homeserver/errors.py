"""The one error type every layer raises; the HTTP layer renders it as JSON."""

from __future__ import annotations

from typing import Any


class MatrixError(Exception):
    """A Matrix error: HTTP status, `errcode` and a human message naming the problem."""

    def __init__(self, http_status: int, errcode: str, message: str, **extra: Any):
        super().__init__(f"{http_status} {errcode}: {message}")
        self.http_status = http_status
        self.errcode = errcode
        self.message = message
        self.extra = extra

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"errcode": self.errcode, "error": self.message}
        body.update(self.extra)
        return body


def bad_json(message: str) -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", message)


def invalid_param(message: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_PARAM", message)


def missing_param(message: str) -> MatrixError:
    return MatrixError(400, "M_MISSING_PARAM", message)


def forbidden(message: str) -> MatrixError:
    return MatrixError(403, "M_FORBIDDEN", message)


def not_found(message: str) -> MatrixError:
    return MatrixError(404, "M_NOT_FOUND", message)
