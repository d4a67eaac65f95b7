"""A tiny room builder for the auth tests: hand-made state maps, explicit event IDs.

`AuthRoom(version)` starts with a create event by CREATOR, CREATOR joined, power levels
(CREATOR at 100 before v12, where creators are not listed) and an invite-only join
rule. Tests then add members, change the state and build the event under test with
`room.event(...)`; nothing here runs the auth rules while building.
"""

from __future__ import annotations

import itertools
from typing import Any

from homeserver.event_auth import check_auth
from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion, get_room_version

CREATOR = "@creator:a.example"
ALICE = "@alice:a.example"
BOB = "@bob:b.example"
CAROL = "@carol:c.example"
MOD = "@mod:a.example"

ALL_VERSIONS = [str(n) for n in range(1, 13)]


def versions(first: int = 1, last: int = 12) -> list[str]:
    """Room version identifiers first..last inclusive."""
    return [str(n) for n in range(first, last + 1)]


def default_power_levels(rv: RoomVersion, **overrides: Any) -> dict[str, Any]:
    content: dict[str, Any] = {
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 0,
        "events_default": 0,
        "state_default": 50,
        "users_default": 0,
        "events": {},
        "users": {} if rv.creator_power_infinite else {CREATOR: 100},
    }
    content.update(overrides)
    return content


class AuthRoom:
    def __init__(
        self,
        version: str,
        *,
        creator: str = CREATOR,
        create_content: dict[str, Any] | None = None,
        power_levels: dict[str, Any] | None | bool = True,
        join_rule: str | None = "invite",
    ):
        self.rv = get_room_version(version)
        self._ids = itertools.count(1)
        self.state: dict[tuple[str, str], Event] = {}

        content = {"room_version": version}
        if not self.rv.implicit_room_creator:
            content["creator"] = creator
        content.update(create_content or {})
        if self.rv.room_id_from_create_event:
            self.room_id = "!createhash"
            create_pdu = self._pdu("m.room.create", creator, content, "")
            del create_pdu["room_id"]
            self.create = Event(create_pdu, self.rv, event_id="$createhash")
        else:
            self.room_id = "!room:" + creator.split(":", 1)[1]
            self.create = self.event("m.room.create", creator, content, state_key="")
        self.put(self.create)

        self.creator_join = self.put(self.member(creator, "join"))
        if power_levels is True:
            power_levels = default_power_levels(self.rv)
        if power_levels:
            self.put(self.event("m.room.power_levels", creator, power_levels, state_key=""))
        if join_rule is not None:
            self.put(self.event("m.room.join_rules", creator, {"join_rule": join_rule}, state_key=""))

    # --- building events ------------------------------------------------------------
    def _pdu(self, type_: str, sender: str, content: dict[str, Any], state_key: str | None) -> dict[str, Any]:
        pdu: dict[str, Any] = {
            "type": type_,
            "room_id": getattr(self, "room_id", None),
            "sender": sender,
            "content": content,
            "prev_events": [],
            "auth_events": [],
            "depth": 1,
            "origin_server_ts": 1,
            "signatures": {sender.split(":", 1)[1]: {"ed25519:k": "sig"}},
        }
        if state_key is not None:
            pdu["state_key"] = state_key
        return pdu

    def new_event_id(self, server: str = "a.example") -> str:
        n = next(self._ids)
        # v1/v2 event IDs carry the origin server (the v1 redaction rule compares it).
        return f"${n}:{server}" if self.rv.event_id_in_event else f"$hash{n}"

    def event(
        self,
        type_: str,
        sender: str,
        content: dict[str, Any] | None = None,
        *,
        state_key: str | None = None,
        prev_events: list[str] | None = None,
        event_id: str | None = None,
        **extra: Any,
    ) -> Event:
        pdu = self._pdu(type_, sender, content if content is not None else {}, state_key)
        pdu["prev_events"] = prev_events if prev_events is not None else ["$previous"]
        pdu.update(extra)
        if event_id is None:
            event_id = self.new_event_id(sender.split(":", 1)[1])
        if self.rv.event_id_in_event:
            pdu["event_id"] = event_id
        return Event(pdu, self.rv, event_id=event_id)

    def member(self, user: str, membership: str, sender: str | None = None, **content: Any) -> Event:
        return self.event(
            "m.room.member", sender or user, {"membership": membership, **content}, state_key=user
        )

    def message(self, sender: str, body: str = "hello", **extra: Any) -> Event:
        return self.event("m.room.message", sender, {"msgtype": "m.text", "body": body}, **extra)

    # --- changing the state -----------------------------------------------------------
    def put(self, event: Event) -> Event:
        self.state[event.state_tuple()] = event
        return event

    def set_member(self, user: str, membership: str, sender: str | None = None) -> AuthRoom:
        self.put(self.member(user, membership, sender))
        return self

    def join(self, *users: str) -> AuthRoom:
        for user in users:
            self.set_member(user, "join")
        return self

    def set_power_levels(self, **overrides: Any) -> AuthRoom:
        self.put(
            self.event(
                "m.room.power_levels", CREATOR, default_power_levels(self.rv, **overrides), state_key=""
            )
        )
        return self

    def set_users(self, users: dict[str, Any]) -> AuthRoom:
        base = {} if self.rv.creator_power_infinite else {CREATOR: 100}
        return self.set_power_levels(users={**base, **users})

    def set_join_rule(self, rule: str, **content: Any) -> AuthRoom:
        self.put(self.event("m.room.join_rules", CREATOR, {"join_rule": rule, **content}, state_key=""))
        return self

    def drop(self, key: tuple[str, str]) -> AuthRoom:
        del self.state[key]
        return self

    # --- running the rules ------------------------------------------------------------
    def allows(self, event: Event) -> bool:
        from homeserver.event_auth import AuthError

        try:
            check_auth(event, self.state, self.rv)
        except AuthError:
            return False
        return True
