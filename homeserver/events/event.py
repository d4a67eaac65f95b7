"""The parsed, immutable room event (PDU) shared by auth, state resolution and storage.

An `Event` wraps the PDU dict exactly as received or built (federation format) and
exposes typed accessors. It never mutates that dict. The event ID is either given
(events loaded from storage, or tests), carried in the PDU (room versions 1-2), or
computed from the reference hash on first access (v3+).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver.events.room_versions import RoomVersion


class Event:
    __slots__ = ("_pdu", "room_version", "_event_id", "rejected_reason", "internal_metadata", "client_json")

    def __init__(
        self,
        pdu: Mapping[str, Any],
        room_version: RoomVersion,
        event_id: str | None = None,
        rejected_reason: str | None = None,
    ):
        self._pdu = pdu
        self.room_version = room_version
        if event_id is None and room_version.event_id_in_event:
            event_id = pdu.get("event_id")
        self._event_id = event_id
        # Set when the event failed auth; rejected events are kept but never count as state.
        self.rejected_reason = rejected_reason
        # Free-form, not part of the event: stream positions, outlier flag, txn id.
        self.internal_metadata: dict[str, Any] = {}
        # The client form's fixed part as JSON and the event's origin_server_ts, once a page has
        # needed them (events/format.py).
        self.client_json: tuple[bytes, int] | None = None

    # --- identity -------------------------------------------------------------
    @property
    def event_id(self) -> str:
        if self._event_id is None:
            from homeserver.events.hashing import compute_event_id

            self._event_id = compute_event_id(self._pdu, self.room_version)
        return self._event_id

    @property
    def pdu(self) -> Mapping[str, Any]:
        """The event in federation format (read-only by convention)."""
        return self._pdu

    # --- fields ---------------------------------------------------------------
    @property
    def type(self) -> str:
        return self._pdu["type"]

    @property
    def room_id(self) -> str:
        room_id = self._pdu.get("room_id")
        if room_id is None and self.room_version.room_id_from_create_event and self.type == "m.room.create":
            # v12: the create event names no room; its ID is derived from the event ID.
            return "!" + self.event_id[1:]
        return room_id

    @property
    def sender(self) -> str:
        return self._pdu["sender"]

    @property
    def content(self) -> Mapping[str, Any]:
        return self._pdu.get("content", {})

    @property
    def state_key(self) -> str | None:
        return self._pdu.get("state_key")

    def is_state(self) -> bool:
        return "state_key" in self._pdu

    @property
    def depth(self) -> int:
        return self._pdu.get("depth", 0)

    @property
    def origin_server_ts(self) -> int:
        return self._pdu.get("origin_server_ts", 0)

    @property
    def prev_event_ids(self) -> list[str]:
        return _event_id_list(self._pdu.get("prev_events", []))

    @property
    def auth_event_ids(self) -> list[str]:
        return _event_id_list(self._pdu.get("auth_events", []))

    @property
    def redacts(self) -> str | None:
        """The event this redaction redacts (top level before v11, in content from v11)."""
        if self.type != "m.room.redaction":
            return None
        if self.room_version.redacts_in_content:
            redacts = self.content.get("redacts")
            return redacts if redacts is not None else self._pdu.get("redacts")
        return self._pdu.get("redacts")

    @property
    def membership(self) -> str | None:
        if self.type != "m.room.member":
            return None
        return self.content.get("membership")

    @property
    def signatures(self) -> Mapping[str, Mapping[str, str]]:
        return self._pdu.get("signatures", {})

    @property
    def hashes(self) -> Mapping[str, str]:
        return self._pdu.get("hashes", {})

    @property
    def unsigned(self) -> Mapping[str, Any]:
        return self._pdu.get("unsigned", {})

    @property
    def origin(self) -> str | None:
        return self._pdu.get("origin")

    def state_tuple(self) -> tuple[str, str]:
        """The (type, state_key) this state event fills."""
        return (self.type, self._pdu["state_key"])

    def get(self, key: str, default: Any = None) -> Any:
        return self._pdu.get(key, default)

    def __repr__(self) -> str:
        sk = f" state_key={self.state_key!r}" if self.is_state() else ""
        return f"<Event {self.event_id} {self.type}{sk} sender={self.sender}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and other.event_id == self.event_id

    def __hash__(self) -> int:
        return hash(self.event_id)


def _event_id_list(refs: list[Any]) -> list[str]:
    # v1/v2 rooms reference events as [event_id, {hashes}] pairs; v3+ as bare IDs.
    return [r[0] if isinstance(r, (list, tuple)) else r for r in refs]
