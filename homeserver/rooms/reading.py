"""Reading rooms: single events, state, members — with history visibility enforced."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from homeserver.errors import forbidden, invalid_param, not_found
from homeserver.events.event import Event
from homeserver.identifiers import is_valid_user_id
from homeserver.requester import Requester
from homeserver.rooms.erasure import ErasedUsers, strip_erased_senders
from homeserver.rooms.serialize import ClientEventSerializer
from homeserver.state import StateAtEvent, is_event_visible
from homeserver.state.visibility import HISTORY_VISIBILITY_KEY
from storage.stores.events import EventStore, StateMap

MEMBERSHIPS = ("join", "invite", "leave", "ban", "knock")
MUTUAL_ROOMS_BATCH = 100


class RoomReader:
    def __init__(self, events: EventStore, serializer: ClientEventSerializer,
                 erased_users: ErasedUsers | None = None, *,
                 wait_for_full_state: Callable[[str], Awaitable[None]] | None = None):
        self._events = events
        # Member lists of a room joined with partial state wait for its full state (as Synapse's do).
        self._wait_for_full_state = wait_for_full_state
        self._serializer = serializer
        self._erased_users = erased_users

    # --- visibility --------------------------------------------------------------
    async def state_at_event_for(self, user_id: str, event_id: str) -> StateAtEvent:
        state = await self._events.get_state_before_event(event_id)
        wanted = [eid for eid in (state.get(HISTORY_VISIBILITY_KEY), state.get(("m.room.member", user_id))) if eid]
        loaded = await self._events.get_events(wanted)
        visibility_event = loaded.get(state.get(HISTORY_VISIBILITY_KEY, ""))
        member_event = loaded.get(state.get(("m.room.member", user_id), ""))
        return StateAtEvent(
            history_visibility=visibility_event.content.get("history_visibility") if visibility_event else None,
            membership=member_event.membership if member_event else None,
        )

    async def filter_visible(self, user_id: str, events: Sequence[Event]) -> list[Event]:
        """The events the user may see, in order."""
        if not events:
            return []
        membership_now, _ = await self._events.get_membership(events[0].room_id, user_id)
        joined_now = membership_now == "join"
        visible = []
        unjoined = set()
        for event in events:
            state = await self.state_at_event_for(user_id, event.event_id)
            if is_event_visible(user_id, event, state, joined_afterwards=joined_now):
                visible.append(event)
                if state.membership != "join":
                    unjoined.add(event.event_id)
        return await strip_erased_senders(visible, unjoined, self._erased_users)

    async def mutual_rooms(self, requester: Requester, other_user_id: str, from_token: str | None) -> dict[str, Any]:
        """GET /mutual_rooms: the rooms both users have joined, by room ID, 100 at a time.

        `next_batch` is the last room ID of the page, so a page stays stable when rooms are
        joined or left between requests (as in Synapse, which sorts the same way).
        """
        if not is_valid_user_id(other_user_id):
            raise invalid_param(f"user_id: {other_user_id!r} is not a valid user ID")
        if other_user_id == requester.user_id:
            raise invalid_param("user_id: you cannot ask for the rooms you share with yourself")
        after = None
        if from_token:
            try:
                after = base64.b64decode(from_token + "=" * (-len(from_token) % 4), altchars=b"-_",
                                         validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                raise invalid_param("from: not a token from a previous response") from None
        mine = await self._events.get_rooms_for_user(requester.user_id, ("join",))
        theirs = await self._events.get_rooms_for_user(other_user_id, ("join",))
        shared = sorted(set(mine) & set(theirs))
        page = [room_id for room_id in shared if after is None or room_id > after][:MUTUAL_ROOMS_BATCH]
        result: dict[str, Any] = {"joined": page, "count": len(shared)}
        if page and page[-1] != shared[-1]:
            result["next_batch"] = base64.urlsafe_b64encode(page[-1].encode("utf-8")).decode("ascii").rstrip("=")
        return result

    async def require_membership(self, user_id: str, room_id: str) -> tuple[str | None, str | None]:
        """The user's (membership, member event id); 403 when they never were in the room."""
        membership, event_id = await self._events.get_membership(room_id, user_id)
        if membership is None:
            if await self._events.get_room_version_id(room_id) is None:
                raise not_found(f"Unknown room {room_id}")
            raise forbidden("You are not a member of this room")
        return membership, event_id

    async def _is_world_readable(self, room_id: str) -> bool:
        state = await self._events.get_current_state_ids(room_id)
        event_id = state.get(HISTORY_VISIBILITY_KEY)
        event = await self._events.get_event(event_id) if event_id else None
        return event is not None and event.content.get("history_visibility") == "world_readable"

    async def require_membership_or_peek(self, user_id: str, room_id: str) -> tuple[str | None, str | None]:
        """Like `require_membership`, but anyone may peek into a world-readable room (as in Synapse)."""
        membership, event_id = await self._events.get_membership(room_id, user_id)
        if membership in ("join", "leave", "ban") or await self._is_world_readable(room_id):
            return membership, event_id
        return await self.require_membership(user_id, room_id)

    async def _readable_state(self, user_id: str, room_id: str) -> StateMap:
        """Current state for members and world-readable peeks; the state when they left for former members."""
        membership, member_event_id = await self.require_membership_or_peek(user_id, room_id)
        if membership in ("leave", "ban") and member_event_id:
            return await self._events.get_state_after_event(member_event_id)
        if membership == "join" or await self._is_world_readable(room_id):
            return await self._events.get_current_state_ids(room_id)
        raise forbidden("You are not a member of this room")

    # --- endpoints ---------------------------------------------------------------
    async def get_event(self, requester: Requester, room_id: str, event_id: str) -> dict[str, Any]:
        event = await self._events.get_event(event_id)
        if event is None or event.room_id != room_id or event.rejected_reason is not None:
            raise not_found("Event not found")
        await self.require_membership_or_peek(requester.user_id, room_id)
        visible = await self.filter_visible(requester.user_id, [event])
        if not visible:
            raise not_found("Event not found")
        return await self._serializer.serialize_one(visible[0], requester)

    async def _full_state_of(self, room_id: str) -> None:
        if self._wait_for_full_state is not None:
            await self._wait_for_full_state(room_id)

    async def get_state(self, requester: Requester, room_id: str) -> list[dict[str, Any]]:
        await self._full_state_of(room_id)
        state = await self._readable_state(requester.user_id, room_id)
        events = await self._events.get_events(state.values())
        ordered = [events[e] for e in sorted(state.values()) if e in events]
        return await self._serializer.serialize(ordered, requester, bundle=False)

    async def get_state_event(self, requester: Requester, room_id: str, event_type: str, state_key: str,
                              *, full_event: bool = False) -> dict[str, Any]:
        state = await self._readable_state(requester.user_id, room_id)
        event_id = state.get((event_type, state_key))
        if event_id is None and event_type == "m.room.member" and self._wait_for_full_state is not None:
            # A member the partial state of a faster join lacks may be in the full state.
            await self._wait_for_full_state(room_id)
            event_id = (await self._readable_state(requester.user_id, room_id)).get((event_type, state_key))
        event = await self._events.get_event(event_id) if event_id else None
        if event is None:
            raise not_found(f"No {event_type} state event with state key {state_key!r}")
        if full_event:
            return await self._serializer.serialize_one(event, requester, bundle=False)
        if event.internal_metadata.get("redacted_by"):
            serialized = await self._serializer.serialize_one(event, requester, bundle=False)
            return serialized["content"]
        return dict(event.content)

    async def get_members(self, requester: Requester, room_id: str, *, at: str | None = None,
                          membership: str | None = None, not_membership: str | None = None) -> list[dict[str, Any]]:
        for name, value in (("membership", membership), ("not_membership", not_membership)):
            if value is not None and value not in MEMBERSHIPS:
                raise invalid_param(f"{name}: must be one of {', '.join(MEMBERSHIPS)}")
        await self._full_state_of(room_id)
        if at is not None:
            await self.require_membership(requester.user_id, room_id)
            state = await self._state_at_token(room_id, at)
        else:
            state = await self._readable_state(requester.user_id, room_id)
        member_ids = [eid for (t, _), eid in state.items() if t == "m.room.member"]
        events = await self._events.get_events(member_ids)
        chosen = []
        for event_id in sorted(member_ids):
            event = events.get(event_id)
            if event is None:
                continue
            if membership is not None and event.membership != membership:
                continue
            if not_membership is not None and event.membership == not_membership:
                continue
            chosen.append(event)
        return await self._serializer.serialize(chosen, requester, bundle=False)

    async def _state_at_token(self, room_id: str, token: str) -> StateMap:
        """State at a sync/pagination token: after the last room event at or before its stream position."""
        from homeserver.streams.client_tokens import parse_stream_position

        position = parse_stream_position(token)
        event_id = await self._events.get_last_event_before(room_id, position)
        if event_id is None:
            return {}
        return await self._events.get_state_after_event(event_id)

    async def get_joined_members(self, requester: Requester, room_id: str) -> dict[str, Any]:
        membership, _ = await self.require_membership(requester.user_id, room_id)
        if membership != "join":
            raise forbidden("You are not joined to this room")
        await self._full_state_of(room_id)
        state = await self._events.get_current_state_ids(room_id)
        member_ids = [eid for (t, _), eid in state.items() if t == "m.room.member"]
        events = await self._events.get_events(member_ids)
        joined: dict[str, Any] = {}
        for event in events.values():
            if event.membership == "join":
                # The spec's schema types both as strings: a member without one has the key left out.
                joined[event.state_key] = {
                    key: event.content[field] for key, field in (("display_name", "displayname"),
                                                                 ("avatar_url", "avatar_url"))
                    if isinstance(event.content.get(field), str)}
        return {"joined": joined}

    async def joined_rooms(self, requester: Requester) -> list[str]:
        return sorted(await self._events.get_rooms_for_user(requester.user_id, ("join",)))
