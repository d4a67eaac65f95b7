"""Checks shared by the admin services: local user IDs, existing users, and body fields."""

from __future__ import annotations

from typing import Any

from homeserver.errors import MatrixError, bad_json, invalid_param, not_found
from homeserver.identifiers import parse_user_id
from storage.stores.users import UserRow, UserStore


def check_local_user_id(user_id: str, server_name: str, field: str = "user_id") -> None:
    """`400 M_INVALID_PARAM` unless `user_id` is a valid ID of this server (as Synapse answers)."""
    _, server = parse_user_id(user_id, field)
    if server != server_name:
        raise invalid_param(f"{field}: can only manage local users")


async def existing_local_user(accounts: UserStore, server_name: str, user_id: str) -> UserRow:
    """The local user, or 400 for a bad/remote ID and 404 for an unknown one."""
    check_local_user_id(user_id, server_name)
    user = await accounts.get_user(user_id)
    if user is None:
        raise not_found("User not found")
    return user


def optional_bool(body: dict[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise bad_json(f"{name}: must be true or false")
    return value


def optional_str(body: dict[str, Any], name: str, max_length: int = 2048) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_json(f"{name}: must be a string")
    if len(value) > max_length:
        raise MatrixError(400, "M_TOO_LARGE", f"{name}: longer than {max_length} characters")
    return value


def optional_int(body: dict[str, Any], name: str, *, minimum: int | None = 0) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid_param(f"{name}: must be an integer")
    if minimum is not None and value < minimum:
        raise invalid_param(f"{name}: must be at least {minimum}")
    return value


def page(items: list[Any], total: int, offset: int, limit: int, key: str) -> dict[str, Any]:
    """Synapse's offset pagination: the items, the total, and `next_token` while more remain."""
    body: dict[str, Any] = {key: items, "total": total}
    if offset + limit < total:
        body["next_token"] = str(offset + len(items))
    return body
