"""Build small rooms and forks of them by hand, for state resolution tests.

A `Room` hands out events whose `auth_events` are picked from the state the event is
sent in, the way a server picks them, and keeps every event in an in-memory store.
State maps are plain dicts (type, state_key) -> event ID, so a fork is just a dict
that went its own way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from homeserver.event_auth import AuthError, auth_types_for_event, check_auth
from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion, get_room_version
from homeserver.state import InMemoryStateResStore

StateMap = dict[tuple[str, str], str]

ALICE = "@alice:example.com"
BOB = "@bob:example.com"
CAROL = "@carol:example.com"
DAVE = "@dave:example.com"
EVE = "@eve:example.org"


class Room:
    def __init__(
        self,
        room_version: str = "10",
        *,
        id_factory: Callable[[dict[str, Any], RoomVersion], str] | None = None,
    ):
        self.room_version = get_room_version(room_version)
        self.store = InMemoryStateResStore()
        self.room_id = "!room:example.com"
        self._clock = 0
        # Event IDs by the short name a test gave them, and the other way round.
        self.ids: dict[str, str] = {}
        self.names: dict[str, str] = {}
        self._id_factory = id_factory

    # --- building events -----------------------------------------------------------
    def send(
        self,
        name: str,
        state: Mapping[tuple[str, str], str],
        event_type: str,
        sender: str,
        content: dict[str, Any],
        state_key: str | None = "",
        *,
        ts: int | None = None,
        depth: int | None = None,
        prev: list[str] | None = None,
        check: bool = True,
        rejected: str | None = None,
    ) -> StateMap:
        """Send an event into `state`; returns the state after it (a new dict).

        With `check` the event must pass the auth rules against that state, so a
        typo in a test shows up here and not as a surprising resolution.
        """
        rv = self.room_version
        self._clock += 1
        pdu: dict[str, Any] = {
            "type": event_type,
            "sender": sender,
            "content": content,
            "origin_server_ts": self._clock if ts is None else ts,
            "hashes": {"sha256": "aGFzaA"},
            "signatures": {},
        }
        if state_key is not None:
            pdu["state_key"] = state_key
        is_create = event_type == "m.room.create"
        if not (is_create and rv.room_id_from_create_event):
            pdu["room_id"] = self.room_id
        probe = Event(pdu, rv, event_id="$probe")
        auth_ids = (
            [] if is_create else [state[k] for k in sorted(auth_types_for_event(probe, rv)) if k in state]
        )
        if not is_create and not rv.room_id_from_create_event and ("m.room.create", "") in state:
            if state[("m.room.create", "")] not in auth_ids:
                auth_ids.insert(0, state[("m.room.create", "")])
        auth_events = [self.store.events[a] for a in auth_ids]
        pdu["auth_events"] = auth_ids
        pdu["prev_events"] = list(prev if prev is not None else ([] if is_create else self._prevs(state)))
        pdu["depth"] = depth if depth is not None else 1 + max((e.depth for e in auth_events), default=0)
        if self._id_factory is not None and not rv.event_id_in_event:
            event_id = self._id_factory(pdu, rv)
        else:
            event_id = "$" + name + (":example.com" if rv.event_id_in_event else "")
        if rv.event_id_in_event:
            pdu["event_id"] = event_id
        event = Event(pdu, rv, event_id=event_id, rejected_reason=rejected)
        if is_create and rv.room_id_from_create_event:
            self.room_id = "!" + event_id[1:]
        if check:
            auth_state = {(e.type, e.state_key): e for e in auth_events}
            if rv.room_id_from_create_event and not is_create:
                create = self.store.events[state[("m.room.create", "")]]
                auth_state[("m.room.create", "")] = create
            for key in auth_types_for_event(event, rv):
                if key in state:
                    auth_state[key] = self.store.events[state[key]]
            check_auth(event, auth_state, rv)
        self.store.add(event)
        self.ids[name] = event_id
        self.names[event_id] = name
        after = dict(state)
        if state_key is not None:
            after[(event_type, state_key)] = event_id
        return after

    def try_send(self, *args: Any, **kwargs: Any) -> StateMap | None:
        """Like `send`, but None when the auth rules refuse the event."""
        try:
            return self.send(*args, **kwargs)
        except AuthError:
            return None

    def _prevs(self, state: Mapping[tuple[str, str], str]) -> list[str]:
        # Good enough for state resolution, which never looks at prev_events: the
        # newest event of the state.
        newest = max(state.values(), key=lambda e: self.store.events[e].origin_server_ts)
        return [newest]

    # --- common shapes ---------------------------------------------------------------
    def create(
        self,
        creator: str = ALICE,
        *,
        users: dict[str, int] | None = None,
        join_rule: str = "public",
        power_extra: dict[str, Any] | None = None,
    ) -> StateMap:
        """create, creator join, power levels, join rules: the usual first four events."""
        content: dict[str, Any] = {"room_version": self.room_version.identifier}
        if not self.room_version.implicit_room_creator:
            content["creator"] = creator
        state = self.send("create", {}, "m.room.create", creator, content)
        state = self.send("ima", state, "m.room.member", creator, {"membership": "join"}, creator)
        levels = dict(users or {})
        if not self.room_version.creator_power_infinite:
            levels.setdefault(creator, 100)
        state = self.send(
            "ipower", state, "m.room.power_levels", creator, {"users": levels, **(power_extra or {})}
        )
        return self.send("ijr", state, "m.room.join_rules", creator, {"join_rule": join_rule})

    def join(self, name: str, state: StateMap, user: str, **kwargs: Any) -> StateMap:
        return self.send(name, state, "m.room.member", user, {"membership": "join"}, user, **kwargs)

    def member(
        self, name: str, state: StateMap, sender: str, target: str, membership: str, **kwargs: Any
    ) -> StateMap:
        return self.send(name, state, "m.room.member", sender, {"membership": membership}, target, **kwargs)

    def power(
        self, name: str, state: StateMap, sender: str, users: dict[str, int], **kwargs: Any
    ) -> StateMap:
        return self.send(name, state, "m.room.power_levels", sender, {"users": users}, **kwargs)

    def topic(self, name: str, state: StateMap, sender: str, topic: str, **kwargs: Any) -> StateMap:
        return self.send(name, state, "m.room.topic", sender, {"topic": topic}, **kwargs)

    def named(self, state: Mapping[tuple[str, str], str]) -> dict[tuple[str, str], str]:
        """A state map with the test's short names instead of event IDs."""
        return {k: self.names.get(v, v) for k, v in state.items()}
