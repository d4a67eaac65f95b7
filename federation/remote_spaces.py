"""Asking other servers about spaces we are not in: GET /_matrix/federation/v1/hierarchy/{roomId}
(implements homeserver/directory/hierarchy.RemoteSpaces). Answers are checked and cached briefly, as the
spec suggests, so paging through a space asks each server once."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from federation.client import FederationClient, FederationError, quote_segment
from homeserver.clock import Clock
from homeserver.directory.hierarchy import RemoteSpace

logger = logging.getLogger(__name__)

FEDERATION_HIERARCHY = "/_matrix/federation/v1/hierarchy"
CACHE_MS = 5 * 60 * 1000
CACHE_SIZE = 1000
MAX_CHILDREN = 1000
# A link's `via` list is the other side's to fill; at most this many of its servers are tried.
MAX_SERVERS_TRIED = 5


def valid_summary(entry: Any) -> bool:
    """A room summary another server sent is usable: a room ID and the fields the spec requires, typed."""
    return (isinstance(entry, dict) and isinstance(entry.get("room_id"), str) and entry["room_id"].startswith("!")
            and isinstance(entry.get("num_joined_members"), int) and not isinstance(entry["num_joined_members"], bool)
            and isinstance(entry.get("world_readable"), bool) and isinstance(entry.get("guest_can_join"), bool))


def parse_remote_space(room_id: str, answer: Any) -> RemoteSpace | None:
    """The checked content of a /hierarchy answer about `room_id`, or None if it is not one."""
    if not isinstance(answer, dict) or not valid_summary(answer.get("room")) or answer["room"]["room_id"] != room_id:
        return None
    room = dict(answer["room"])
    if not isinstance(room.get("children_state"), list):
        room["children_state"] = []
    children = answer.get("children")
    inaccessible = answer.get("inaccessible_children")
    return RemoteSpace(
        room,
        [dict(c) for c in children[:MAX_CHILDREN] if valid_summary(c)] if isinstance(children, list) else [],
        frozenset(r for r in inaccessible[:MAX_CHILDREN] if isinstance(r, str))
        if isinstance(inaccessible, list) else frozenset(),
    )


class RemoteSpaceQueries:
    def __init__(self, server_name: str, client: FederationClient, clock: Clock):
        self._server_name = server_name
        self._client = client
        self._clock = clock
        self._cache: OrderedDict[tuple[str, bool], tuple[int, RemoteSpace]] = OrderedDict()

    async def space_hierarchy(self, servers: Sequence[str], room_id: str, suggested_only: bool
                              ) -> RemoteSpace | None:
        """The first usable answer of `servers` (ours skipped) about `room_id`, cached for a few minutes."""
        now = self._clock.time_ms()
        key = (room_id, suggested_only)
        cached = self._cache.get(key)
        if cached is not None and now - cached[0] < CACHE_MS:
            return cached[1]
        for server in [s for s in dict.fromkeys(servers) if s != self._server_name][:MAX_SERVERS_TRIED]:
            try:
                answer = await self._client.get_json(server, f"{FEDERATION_HIERARCHY}/{quote_segment(room_id)}",
                                                     {"suggested_only": suggested_only})
            except FederationError as e:
                logger.info("%s could not describe space %s: %s", server, room_id, e)
                continue
            space = parse_remote_space(room_id, answer)
            if space is None:
                logger.info("%s answered /hierarchy for %s with something unusable", server, room_id)
                continue
            self._cache[key] = (now, space)
            self._cache.move_to_end(key)
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
            return space
        return None
