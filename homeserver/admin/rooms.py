"""Managing rooms as a server admin: listing, inspecting, blocking, deleting and purging history."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.admin.common import check_local_user_id, optional_bool, optional_str
from homeserver.admin.tasks import AdminTaskRunner
from homeserver.clock import Clock
from homeserver.errors import MatrixError, bad_json, invalid_param, missing_param, not_found
from homeserver.events.sync_filter import EventFilter
from homeserver.identifiers import is_valid_user_id
from homeserver.requester import Requester
from homeserver.rooms.creation import RoomCreator
from homeserver.rooms.history import token_after, token_before
from homeserver.rooms.membership import MembershipService
from homeserver.rooms.room_event_filter import conditions_of
from homeserver.rooms.sender import RoomEventSender
from homeserver.rooms.serialize import ClientEventSerializer
from homeserver.streams.bus import StreamBus
from homeserver.streams.client_tokens import PaginationToken, parse_pagination_token
from homeserver.streams.updates import RoomPurged
from storage.stores.accounts import AccountStore
from storage.stores.admin import AdminStore, AdminTaskRow, RoomSummaryRow
from storage.stores.aliases import AliasStore
from storage.stores.events import EventStore
from storage.stores.purge import PurgeStore
from storage.stores.timeline import Bound, EventConditions, TimelineStore

logger = logging.getLogger(__name__)

DELETE_ROOM = "shutdown_and_purge_room"
PURGE_HISTORY = "purge_history"
DEFAULT_NEW_ROOM_NAME = "Content Violation Notification"
DEFAULT_MESSAGE = "Sharing illegal content on this server is not permitted and rooms in violation will be blocked."

# order_by values of the room list, as Synapse names them, to the summary field they sort by.
ROOM_ORDERS = ("name", "canonical_alias", "joined_members", "joined_local_members", "version", "creator",
               "encryption", "federatable", "public", "join_rules", "guest_access", "history_visibility",
               "state_events", "alphabetical", "size")


def _summary(row: RoomSummaryRow, *, details: bool) -> dict[str, Any]:
    state = row.state
    create = state.get("m.room.create", {})
    summary = {
        "room_id": row.room_id,
        "name": state.get("m.room.name", {}).get("name"),
        "canonical_alias": state.get("m.room.canonical_alias", {}).get("alias"),
        "joined_members": row.joined_members,
        "joined_local_members": row.joined_local_members,
        "version": row.version,
        "creator": row.creator,
        "encryption": state.get("m.room.encryption", {}).get("algorithm"),
        "federatable": create.get("m.federate", True) is not False,
        "public": row.public,
        "join_rules": state.get("m.room.join_rules", {}).get("join_rule"),
        "guest_access": state.get("m.room.guest_access", {}).get("guest_access"),
        "history_visibility": state.get("m.room.history_visibility", {}).get("history_visibility"),
        "state_events": row.state_events,
        "room_type": create.get("type"),
    }
    if details:
        summary["topic"] = state.get("m.room.topic", {}).get("topic")
        summary["avatar"] = state.get("m.room.avatar", {}).get("url")
    return summary


def _sort_key(order_by: str):  # noqa: ANN202 - a key function
    field = {"alphabetical": "name", "size": "joined_members"}.get(order_by, order_by)

    def key(room: dict[str, Any]) -> tuple[Any, ...]:
        value = room[field]
        # None first, then values of one type; the room ID breaks ties.
        return (value is not None, value if value is not None else 0, room["room_id"])

    return key


def _check_room_id(room_id: str) -> None:
    if not room_id.startswith("!") or ":" not in room_id:
        raise invalid_param(f"room_id: {room_id!r} is not a legal room ID")


class AdminRoomService:
    def __init__(self, server_name: str, events: EventStore, timeline: TimelineStore, admin_store: AdminStore,
                 purge_store: PurgeStore, accounts: AccountStore, aliases: AliasStore, sender: RoomEventSender,
                 membership: MembershipService, creator: RoomCreator, serializer: ClientEventSerializer,
                 tasks: AdminTaskRunner, clock: Clock, *,
                 delete_unreferenced_media: Callable[[set[str]], Awaitable[list[str]]] | None = None,
                 bus: StreamBus | None = None):
        self._server_name = server_name
        self._events = events
        self._timeline = timeline
        self._store = admin_store
        self._purge = purge_store
        self._accounts = accounts
        self._aliases = aliases
        self._sender = sender
        self._membership = membership
        self._creator = creator
        self._serializer = serializer
        self._tasks = tasks
        self._clock = clock
        self._bus = bus
        # What purges with `delete_media` call with the mxc URIs the purged events named.
        self._delete_unreferenced_media = delete_unreferenced_media

    async def _delete_media(self, uris: set[str]) -> list[str]:
        if self._delete_unreferenced_media is None or not uris:
            return []
        return await self._delete_unreferenced_media(uris)

    # --- reading ---------------------------------------------------------------------------
    async def list_rooms(self, *, search_term: str | None, order_by: str, backwards: bool, offset: int,
                         limit: int, public_rooms: bool | None = None,
                         empty_rooms: bool | None = None) -> dict[str, Any]:
        """`GET /v1/rooms`: a page of rooms, searched by name, alias or ID."""
        if search_term == "":
            raise invalid_param("search_term: cannot be an empty string")
        rooms = [_summary(r, details=False) for r in await self._store.room_summaries(self._server_name)]
        if search_term is not None:
            term = search_term.lower()
            rooms = [r for r in rooms if term in (r["name"] or "").lower()
                     or term in (r["canonical_alias"] or "").lower() or r["room_id"] == search_term]
        if public_rooms is not None:
            rooms = [r for r in rooms if r["public"] == public_rooms]
        if empty_rooms is not None:
            rooms = [r for r in rooms if (r["joined_members"] == 0) == empty_rooms]
        descending = backwards != (order_by in ("joined_members", "joined_local_members", "state_events", "size"))
        rooms.sort(key=_sort_key(order_by), reverse=descending)
        total = len(rooms)
        page = rooms[offset:offset + limit]
        body: dict[str, Any] = {"offset": offset, "rooms": page, "total_rooms": total}
        if offset + limit < total:
            body["next_batch"] = offset + limit
        if offset > 0:
            body["prev_batch"] = max(0, offset - limit)
        return body

    async def get_room(self, room_id: str) -> dict[str, Any]:
        """`GET /v1/rooms/{roomId}`: the room's summary, local devices, tombstone and forgotten flag."""
        rows = await self._store.room_summaries(self._server_name, room_id)
        if not rows:
            raise not_found("Room not found")
        room = _summary(rows[0], details=True)
        members = await self._events.get_members(room_id, ("join",))
        local = [m for m in members if m.endswith(":" + self._server_name)]
        room["joined_local_devices"] = await self._store.count_devices(local) if local else 0
        room["forgotten"] = False
        tombstone_id = await self._events.get_current_state_event_id(room_id, "m.room.tombstone", "")
        tombstone = await self._events.get_event(tombstone_id) if tombstone_id else None
        room["tombstoned"] = tombstone is not None
        room["replacement_room"] = tombstone.content.get("replacement_room") if tombstone else None
        return room

    async def _require_room(self, room_id: str) -> None:
        if await self._events.get_room_version_id(room_id) is None:
            raise not_found("Room not found")

    async def members(self, room_id: str) -> dict[str, Any]:
        await self._require_room(room_id)
        members = sorted(await self._events.get_members(room_id, ("join",)))
        return {"members": members, "total": len(members)}

    async def state(self, requester: Requester, room_id: str, event_type: str | None) -> dict[str, Any]:
        await self._require_room(room_id)
        state = await self._events.get_current_state_ids(room_id)
        ids = [eid for (t, _), eid in sorted(state.items()) if event_type is None or t == event_type]
        loaded = await self._events.get_events(ids)
        events = [loaded[eid] for eid in ids if eid in loaded]
        return {"state": await self._serializer.serialize(events, requester, bundle=False)}

    async def forward_extremities(self, room_id_or_alias: str) -> dict[str, Any]:
        room_id = await self._membership.resolve_room(room_id_or_alias)
        await self._require_room(room_id)
        extremities = await self._events.get_forward_extremities(room_id)
        loaded = await self._events.get_events(extremities)
        groups = await self._events.get_state_groups_for_events(extremities)
        results = [{"event_id": eid, "state_group": groups.get(eid), "depth": loaded[eid].depth,
                    "received_ts": None} for eid in sorted(extremities) if eid in loaded]
        return {"count": len(results), "results": results}

    async def delete_forward_extremities(self, room_id_or_alias: str) -> dict[str, Any]:
        """Keep only the room's newest forward extremity (deepest, then latest received), as Synapse does:
        the next event then builds on it alone, which heals a room slowed by many stale extremities."""
        room_id = await self._membership.resolve_room(room_id_or_alias)
        await self._require_room(room_id)
        async with self._sender.room_lock(room_id):
            extremities = await self._events.get_forward_extremities(room_id)
            if len(extremities) <= 1:
                return {"deleted": 0}
            loaded = await self._events.get_events(extremities)
            newest = max(loaded.values(), key=lambda e: (e.depth, e.internal_metadata.get("stream_ordering") or 0))
            deleted = await self._events.delete_forward_extremities(room_id, newest.event_id)
            self._sender.forget_head(room_id)
        logger.info("admin: dropped %d forward extremities of %s, kept %s", deleted, room_id, newest.event_id)
        return {"deleted": deleted}

    async def messages(self, requester: Requester, room_id: str, *, from_token: str | None, to_token: str | None,
                       backwards: bool, limit: int, event_filter: EventFilter | None = None) -> dict[str, Any]:
        """`GET /v1/rooms/{roomId}/messages`: the timeline as an admin sees it (every event the filter passes)."""
        await self._require_room(room_id)
        start = parse_pagination_token(from_token, "from") if from_token else None
        end = parse_pagination_token(to_token, "to") if to_token else None
        rows = await self._timeline.paginate(
            room_id, backwards=backwards, limit=limit,
            from_bound=Bound(start.depth, start.stream) if start else None,
            to_bound=Bound(end.depth, end.stream) if end else None,
            conditions=conditions_of(event_filter) if event_filter else EventConditions())
        loaded = await self._events.get_events([r.event_id for r in rows])
        events = [loaded[r.event_id] for r in rows if r.event_id in loaded]
        if from_token:
            start_token = from_token
        elif rows:
            start_token = token_after(rows[0].position) if backwards else token_before(rows[0].position)
        else:
            start_token = str(PaginationToken(None, await self._events.current_stream_position()))
        body: dict[str, Any] = {"chunk": await self._serializer.serialize(events, requester), "start": start_token}
        if rows and len(rows) >= limit:
            body["end"] = token_before(rows[-1].position) if backwards else token_after(rows[-1].position)
        return body

    async def context(self, requester: Requester, room_id: str, event_id: str, limit: int,
                      event_filter: EventFilter | None = None) -> dict[str, Any]:
        """`GET /v1/rooms/{roomId}/context/{eventId}`: the event, its neighbours (as filtered) and the state after."""
        await self._require_room(room_id)
        conditions = conditions_of(event_filter) if event_filter else EventConditions()
        found = await self._timeline.get_position(event_id)
        if found is None or found[0] != room_id:
            raise not_found("Event not found")
        depth, stream = found[1]
        before_rows = await self._timeline.paginate(room_id, backwards=True, limit=limit // 2,
                                                    from_bound=Bound(depth, stream - 1), conditions=conditions)
        after_rows = await self._timeline.paginate(room_id, backwards=False, limit=limit - limit // 2,
                                                   from_bound=Bound(depth, stream), conditions=conditions)
        ids = [event_id, *[r.event_id for r in before_rows], *[r.event_id for r in after_rows]]
        loaded = await self._events.get_events(ids)
        serialized = await self._serializer.serialize([loaded[i] for i in ids if i in loaded], requester)
        last = after_rows[-1].event_id if after_rows else event_id
        state_ids = await self._events.get_state_after_event(last)
        state = await self._events.get_events(state_ids.values())
        return {
            "event": serialized[0],
            "events_before": serialized[1:1 + len(before_rows)],
            "events_after": serialized[1 + len(before_rows):],
            "start": token_before(before_rows[-1].position if before_rows else found[1]),
            "end": token_after(after_rows[-1].position if after_rows else found[1]),
            "state": await self._serializer.serialize([state[i] for i in sorted(state)], requester, bundle=False),
        }

    async def fetch_event(self, requester: Requester, event_id: str) -> dict[str, Any]:
        """`GET /v1/fetch_event/{eventId}`: any event we hold, whatever room it is in."""
        event = await self._events.get_event(event_id)
        if event is None:
            raise not_found("Event not found")
        return {"event": await self._serializer.serialize_one(event, requester)}

    async def timestamp_to_event(self, room_id: str, ts: int, forwards: bool) -> dict[str, Any]:
        """`GET /v1/rooms/{roomId}/timestamp_to_event`: the event nearest `ts`, as an admin sees the room."""
        await self._require_room(room_id)
        found = await self._timeline.closest_event_to_timestamp(room_id, ts, forwards=forwards)
        if found is None:
            raise not_found(f"No event found {'after' if forwards else 'before'} {ts}")
        return {"event_id": found[0], "origin_server_ts": found[1]}

    # --- blocking ---------------------------------------------------------------------------
    async def get_block(self, room_id: str) -> dict[str, Any]:
        _check_room_id(room_id)
        by = await self._store.get_room_block(room_id)
        return {"block": True, "user_id": by} if by is not None else {"block": False}

    async def set_block(self, requester: Requester, room_id: str, body: dict[str, Any]) -> dict[str, Any]:
        _check_room_id(room_id)
        if "block" not in body:
            raise missing_param("block: required")
        block = optional_bool(body, "block")
        if block:
            await self._store.block_room(room_id, requester.user_id)
        else:
            await self._store.unblock_room(room_id)
        return {"block": bool(block)}

    async def join_user(self, requester: Requester, room_id_or_alias: str, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /v1/join/{roomIdOrAlias}`: make a local user join; invited by the admin unless public."""
        user_id = body.get("user_id")
        if user_id is None:
            raise missing_param("user_id: required")
        if not isinstance(user_id, str):
            raise bad_json("user_id: must be a string")
        check_local_user_id(user_id, self._server_name)
        if await self._accounts.get_user(user_id) is None:
            raise not_found("User not found")
        room_id = await self._membership.resolve_room(room_id_or_alias)
        await self._require_room(room_id)
        if await self._join_rule(room_id) != "public":
            membership, _ = await self._events.get_membership(room_id, user_id)
            if membership not in ("join", "invite"):
                await self._membership.invite(requester.user_id, room_id, user_id)
        await self._membership.join(user_id, room_id)
        return {"room_id": room_id}

    async def make_room_admin(self, requester: Requester, room_id_or_alias: str,
                              body: dict[str, Any]) -> dict[str, Any]:
        """`POST /v1/rooms/{roomId}/make_room_admin`: give a local user the highest power level in the room."""
        user_id = body.get("user_id", requester.user_id)
        if not isinstance(user_id, str) or not is_valid_user_id(user_id):
            raise invalid_param("user_id: must be a valid user ID")
        check_local_user_id(user_id, self._server_name)
        room_id = await self._membership.resolve_room(room_id_or_alias)
        await self._require_room(room_id)
        pl_id = await self._events.get_current_state_event_id(room_id, "m.room.power_levels", "")
        pl_event = await self._events.get_event(pl_id) if pl_id else None
        if pl_event is None:
            raise MatrixError(400, "M_UNKNOWN", "The room has no power levels to change")
        power = dict(pl_event.content)
        users = dict(power.get("users") or {})
        local_members = [m for m in await self._events.get_members(room_id, ("join",))
                         if m.endswith(":" + self._server_name)]
        if not local_members:
            raise MatrixError(400, "M_UNKNOWN", "No local user is joined to the room, so none can grant power")
        admin_user = max(local_members, key=lambda m: (users.get(m, power.get("users_default", 0)), m))
        top = users.get(admin_user, power.get("users_default", 0))
        membership, _ = await self._events.get_membership(room_id, user_id)
        if membership != "join":
            if await self._join_rule(room_id) != "public" and membership != "invite":
                await self._membership.invite(admin_user, room_id, user_id)
            await self._membership.join(user_id, room_id)
        users[user_id] = top
        power["users"] = users
        await self._sender.send(room_id, admin_user, "m.room.power_levels", power, state_key="")
        return {}

    async def _join_rule(self, room_id: str) -> str | None:
        event_id = await self._events.get_current_state_event_id(room_id, "m.room.join_rules", "")
        event = await self._events.get_event(event_id) if event_id else None
        return event.content.get("join_rule") if event else None

    # --- deleting a room -------------------------------------------------------------------------
    async def start_delete_room(self, requester: Requester, room_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """`DELETE /v2/rooms/{roomId}`: shut the room down (and purge it) in the background."""
        params = await self._delete_params(requester, room_id, body)
        return {"delete_id": await self._tasks.schedule(DELETE_ROOM, room_id, params)}

    async def delete_room_now(self, requester: Requester, room_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """`DELETE /v1/rooms/{roomId}`: the same, answering once done."""
        params = await self._delete_params(requester, room_id, body)
        return await self._delete_room(room_id, params, None)

    async def _delete_params(self, requester: Requester, room_id: str, body: dict[str, Any]) -> dict[str, Any]:
        block = optional_bool(body, "block")
        purge = optional_bool(body, "purge")
        force_purge = optional_bool(body, "force_purge")
        new_room_user_id = optional_str(body, "new_room_user_id", 255)
        room_name = optional_str(body, "room_name", 255)
        message = optional_str(body, "message", 4096)
        delete_media = optional_bool(body, "delete_media")
        _check_room_id(room_id)
        if new_room_user_id is not None:
            check_local_user_id(new_room_user_id, self._server_name, "new_room_user_id")
            if await self._accounts.get_user(new_room_user_id) is None:
                raise not_found("new_room_user_id: user not found")
        if not block and await self._events.get_room_version_id(room_id) is None:
            raise not_found("Room not found")
        return {"requester_user_id": requester.user_id, "block": bool(block),
                "purge": purge is not False, "force_purge": bool(force_purge),
                "new_room_user_id": new_room_user_id, "new_room_name": room_name, "message": message,
                "delete_media": bool(delete_media)}

    async def delete_status_for_room(self, room_id: str) -> dict[str, Any]:
        _check_room_id(room_id)
        tasks = await self._store.get_tasks(DELETE_ROOM, room_id)
        if not tasks:
            raise not_found(f"No delete task for room_id '{room_id}' found")
        return {"results": [_delete_status(t) for t in tasks]}

    async def delete_status(self, delete_id: str) -> dict[str, Any]:
        task = await self._store.get_task(delete_id)
        if task is None or task.action != DELETE_ROOM:
            raise not_found(f"delete id '{delete_id}' not found")
        return _delete_status(task)

    async def run_delete_room(self, task_id: str, params: dict[str, Any]) -> dict[str, Any]:
        task = await self._store.get_task(task_id)
        assert task is not None
        return await self._delete_room(task.resource_id, params, task_id)

    async def _delete_room(self, room_id: str, params: dict[str, Any], task_id: str | None) -> dict[str, Any]:
        result: dict[str, Any] = {"kicked_users": [], "failed_to_kick_users": [], "local_aliases": [],
                                  "new_room_id": None}
        if params["block"]:
            await self._store.block_room(room_id, params["requester_user_id"])
        exists = await self._events.get_room_version_id(room_id) is not None
        if not exists:
            return result
        new_room_id = None
        if params["new_room_user_id"]:
            new_room_id = await self._notice_room(params)
            result["new_room_id"] = new_room_id
        local_members = [m for m in await self._events.get_members(room_id, ("join", "invite"))
                         if m.endswith(":" + self._server_name)]
        logger.info("Deleting room %s: %d local members to remove", room_id, len(local_members))
        for index, user_id in enumerate(sorted(local_members), 1):
            try:
                await self._membership.leave(user_id, room_id)
                await self._events.forget_room(user_id, room_id)
                if new_room_id is not None and user_id != params["new_room_user_id"]:
                    await self._membership.invite(params["new_room_user_id"], new_room_id, user_id)
                    await self._membership.join(user_id, new_room_id)
                result["kicked_users"].append(user_id)
            except Exception as e:
                logger.warning("Deleting room %s: could not remove %s: %s", room_id, user_id, e)
                result["failed_to_kick_users"].append(user_id)
            if index % 50 == 0 and task_id is not None:
                logger.info("Deleting room %s: %d/%d members removed", room_id, index, len(local_members))
                await self._tasks.progress(task_id, result)
        for alias in await self._aliases.get_aliases_for_room(room_id):
            result["local_aliases"].append(alias)
            await self._aliases.delete_alias(alias)
            if new_room_id is not None:
                await self._aliases.create_alias(alias, new_room_id, params["new_room_user_id"],
                                                 self._clock.time_ms())
        if params["purge"]:
            async with self._sender.room_lock(room_id):
                media = await self._store.room_media_uris(room_id) if params.get("delete_media") else set()
                event_ids = await self._purge.room_event_ids(room_id)
                count = await self._purge.delete_room(room_id)
                self._events.drop_cached(event_ids, room_id)
                self._sender.forget_head(room_id)
            if self._bus is not None:
                await self._bus.publish(RoomPurged(room_id))
            logger.info("Deleting room %s: purged %d events", room_id, count)
            if media:
                result["deleted_media"] = await self._delete_media(media)
                logger.info("Deleting room %s: deleted %d media items only it used", room_id,
                            len(result["deleted_media"]))
        return result

    async def _notice_room(self, params: dict[str, Any]) -> str:
        creator = params["new_room_user_id"]
        room = await self._creator.create_room(creator, {
            "preset": "public_chat", "name": params["new_room_name"] or DEFAULT_NEW_ROOM_NAME,
            "power_level_content_override": {"users_default": -10}})
        await self._sender.send(room["room_id"], creator, "m.room.message",
                                {"msgtype": "m.text", "body": params["message"] or DEFAULT_MESSAGE})
        return room["room_id"]

    # --- purging history -------------------------------------------------------------------------
    async def start_purge_history(self, room_id: str, event_id: str | None, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /v1/purge_history/{roomId}[/{eventId}]`: purge events before a point, in the background."""
        _check_room_id(room_id)
        await self._require_room(room_id)
        delete_local = optional_bool(body, "delete_local_events")
        delete_media = optional_bool(body, "delete_media")
        if event_id is None:
            event_id = body.get("purge_up_to_event_id")
            if event_id is not None and not isinstance(event_id, str):
                raise bad_json("purge_up_to_event_id: must be a string")
        if event_id is not None:
            position = await self._purge.get_event_position(event_id)
            if position is None or position[0] != room_id:
                raise not_found("event_id: event not found in this room")
            before_depth = position[1]
        else:
            ts = body.get("purge_up_to_ts")
            if ts is None:
                raise missing_param("purge_up_to_ts: required when no event_id is given")
            if not isinstance(ts, int) or isinstance(ts, bool):
                raise invalid_param("purge_up_to_ts: must be an integer timestamp")
            depth = await self._purge.depth_at_ts(room_id, ts)
            before_depth = depth if depth is not None else (await self._purge.max_depth(room_id) or 0) + 1
        params = {"before_depth": before_depth, "delete_local_events": bool(delete_local),
                  "delete_media": bool(delete_media)}
        return {"purge_id": await self._tasks.schedule(PURGE_HISTORY, room_id, params)}

    async def purge_status(self, purge_id: str) -> dict[str, Any]:
        task = await self._store.get_task(purge_id)
        if task is None or task.action != PURGE_HISTORY:
            raise not_found(f"purge id '{purge_id}' not found")
        body: dict[str, Any] = {"status": _public_status(task.status)}
        if task.status == "failed":
            body["error"] = task.error
        return body

    async def run_purge_history(self, task_id: str, params: dict[str, Any]) -> dict[str, Any]:
        task = await self._store.get_task(task_id)
        assert task is not None
        room_id = task.resource_id
        async with self._sender.room_lock(room_id):
            deleted_ids, kept = await self._purge.events_to_purge(
                room_id, params["before_depth"], local_server=self._server_name,
                delete_local_events=params["delete_local_events"])
            logger.info("Purging history of %s: %d events to delete, %d state events kept as outliers",
                        room_id, len(deleted_ids), len(kept))
            media = await self._store.event_media_uris(deleted_ids) if params.get("delete_media") else set()
            deleted = await self._purge.purge_events(room_id, deleted_ids, kept)
            groups = await self._purge.purge_unreferenced_state_groups(room_id)
            self._events.drop_cached([*deleted_ids, *kept])
        deleted_media = await self._delete_media(media)
        logger.info("Purged history of %s: %d events, %d state groups and %d media items deleted", room_id, deleted,
                    groups, len(deleted_media))
        return {"events_deleted": deleted, "state_events_kept": len(kept), "state_groups_deleted": groups,
                "deleted_media": deleted_media}


def _public_status(status: str) -> str:
    # Synapse's purge status knows only these three; a scheduled job is as good as active.
    return {"scheduled": "active"}.get(status, status)


def _delete_status(task: AdminTaskRow) -> dict[str, Any]:
    body: dict[str, Any] = {"delete_id": task.task_id, "room_id": task.resource_id,
                            "status": task.status, "shutdown_room": task.result}
    if task.status == "failed":
        body["error"] = task.error
    return body
