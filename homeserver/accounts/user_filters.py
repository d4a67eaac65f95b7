"""Sync filters: validated against the spec's filter schema, stored per user with increasing ids."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema.exceptions
import referencing
import referencing.jsonschema
import yaml

from homeserver.errors import bad_json, forbidden, not_found
from homeserver.identifiers import parse_user_id
from storage.stores.filters import FilterStore

SCHEMA_DIR = Path(__file__).with_name("filter_schema")
SCHEMA_FILES = ("sync_filter.yaml", "event_filter.yaml", "room_event_filter.yaml")
# Any base works: it only has to let the files' relative $refs ("event_filter.yaml") resolve.
_BASE_URI = "https://schemas.invalid/client-server/definitions/"


@functools.cache
def filter_validator() -> jsonschema.protocols.Validator:
    """A validator for the spec's Filter object, with its $refs resolved from the bundled files."""
    resources = []
    for name in SCHEMA_FILES:
        with (SCHEMA_DIR / name).open(encoding="utf-8") as handle:
            contents = yaml.safe_load(handle)
        resource = referencing.Resource.from_contents(
            contents, default_specification=referencing.jsonschema.DRAFT202012
        )
        resources.append((_BASE_URI + name, resource))
    registry: referencing.Registry = referencing.Registry().with_resources(resources)
    return jsonschema.Draft202012Validator({"$ref": _BASE_URI + "sync_filter.yaml"}, registry=registry)


def _field_path(error: jsonschema.exceptions.ValidationError) -> str:
    path = ".".join(str(part) for part in error.absolute_path)
    return path or "filter"


def _limits(filter_json: dict[str, Any]) -> list[tuple[str, Any]]:
    """Every `limit` of the filter's event filters, with its path."""
    found = []
    for section in ("presence", "account_data"):
        part = filter_json.get(section)
        if isinstance(part, dict) and "limit" in part:
            found.append((f"{section}.limit", part["limit"]))
    room = filter_json.get("room")
    if isinstance(room, dict):
        for section in ("ephemeral", "state", "timeline", "account_data"):
            part = room.get(section)
            if isinstance(part, dict) and "limit" in part:
                found.append((f"room.{section}.limit", part["limit"]))
    return found


def check_filter(filter_json: dict[str, Any]) -> None:
    """400 `M_BAD_JSON` naming the first field that does not match the spec's filter schema."""
    error = jsonschema.exceptions.best_match(filter_validator().iter_errors(filter_json))
    if error is not None:
        raise bad_json(f"{_field_path(error)}: {error.message}")
    # The prose asks for limits greater than 0; 0 is tolerated because Synapse accepts it and
    # clients send it to mean "nothing", but a negative limit is nonsense.
    for path, limit in _limits(filter_json):
        if limit < 0:
            raise bad_json(f"{path}: must not be negative")


class FilterService:
    def __init__(self, store: FilterStore):
        self._store = store

    async def create_filter(self, requester_id: str, user_id: str, filter_json: dict[str, Any]) -> str:
        """Validate and store a filter for the requester; returns its id."""
        _check_owner(requester_id, user_id)
        check_filter(filter_json)
        return str(await self._store.add_filter(user_id, filter_json))

    async def get_filter(self, requester_id: str, user_id: str, filter_id: str) -> dict[str, Any]:
        """One of the requester's filters; 404 when there is no such id."""
        _check_owner(requester_id, user_id)
        # Our ids are decimal integers, so anything else names no filter.
        if not filter_id.isdigit() or not filter_id.isascii() or len(filter_id) > 18:
            raise not_found("No such filter")
        found = await self._store.get_filter(user_id, int(filter_id))
        if found is None:
            raise not_found("No such filter")
        return found


def _check_owner(requester_id: str, user_id: str) -> None:
    parse_user_id(user_id, "userId")
    if requester_id != user_id:
        raise forbidden("userId: cannot use the filters of other users")
