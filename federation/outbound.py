"""Handing our users' room events to the servers in the room, durably.

A stream stage (`federation_handoff`) follows the events stream. For each persisted event sent
by one of our users, it computes the destinations: every server with a member joined in the
room at that event (the state after it), plus, for a membership event, the server of the user
it is about (an invite, a kick or a ban of a remote user reaches that user's server even though
it is not joined), and, in a room we joined with partial state (faster joins), the servers the join
answer listed in `servers_in_room`. Ourselves and the servers our federation policy refuses are left out. Events
of remote users that we accepted as the resident server (send_join, send_leave, send_knock) are
passed on the same way when marked with `internal_metadata["send_on_behalf_of"] = origin`
(the origin itself is left out), as Synapse does. The
PDUs are queued per destination in the outbound queue in the transaction that also moves the
stage, so a crash neither loses nor repeats a hand-off; the courier (federation/sender.py) then
sends them as transactions.

EDUs (typing, receipts, presence, to-device, device lists: part 2) are queued per destination
with `queue_edus`, and travel in the same transactions as the PDUs. One kind rides with the stage
itself: when one of our users newly joins a room, `join_edus` (the device-list sender's) names the
EDUs owed to the room's servers that learn of the user through this join (the spec asks that they
be sent the user's device list); they are queued right after the join in the same transaction, so
a server never hears of the devices of a user it does not yet know to be in the room.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from federation.policy import ServerPolicy
from homeserver.clock import Clock
from homeserver.events.event import Event
from homeserver.identifiers import parse_server_name
from homeserver.streams.bus import StreamBus
from homeserver.streams.stages import EventStage
from homeserver.streams.updates import OutboundItemsQueued
from storage.stores.events import EventStore
from storage.stores.federation_outbound import FEDERATION_KIND, FederationOutboundStore
from storage.stores.partial_state import PartialStateStore
from storage.stores.stages import StagePositionStore

logger = logging.getLogger(__name__)

HANDOFF_STAGE = "federation_handoff"
# internal_metadata key (stored with the event): the server whose event we pass on to the rest of
# the room. The resident side of send_join / send_leave / send_knock sets it to the origin.
SEND_ON_BEHALF_OF = "send_on_behalf_of"
# Joined servers per state group, kept because every message of a room shares its group.
HOSTS_CACHE_SIZE = 2000

# (our user's join event, the servers it goes to) -> EDUs owed per server because of the join.
JoinEdus = Callable[[Event, Sequence[str]], Awaitable[dict[str, list[dict[str, Any]]]]]


def server_of(user_id: str) -> str:
    """The server name part of a user ID (everything after the first colon)."""
    return user_id.split(":", 1)[1] if ":" in user_id else ""


def _valid_server_name(name: str) -> bool:
    # A name no request could ever reach would only sit in the queue, retried forever.
    try:
        parse_server_name(name)
    except ValueError:
        return False
    return True


class FederationHandoff:
    """The `federation_handoff` stage, and the entry point for queueing EDUs."""

    def __init__(self, server_name: str, store: FederationOutboundStore, events: EventStore,
                 positions: StagePositionStore, bus: StreamBus, clock: Clock, policy: ServerPolicy, *,
                 enabled: bool = True, registry: CollectorRegistry | None = None,
                 partial_state: PartialStateStore | None = None, join_edus: JoinEdus | None = None):
        self._server_name = server_name
        self._join_edus = join_edus
        # Rooms joined with partial state: their member list is incomplete, so events also go to the
        # servers the join answer said were in the room.
        self._partial_state = partial_state
        self._store = store
        self._events = events
        self._bus = bus
        self._clock = clock
        self._policy = policy
        self._enabled = enabled
        self._hosts: OrderedDict[int, frozenset[str]] = OrderedDict()
        self.stage = EventStage(HANDOFF_STAGE, events, positions, self._hand_off, registry=registry)

    # --- the stage -------------------------------------------------------------------------
    async def _hand_off(self, events: Sequence[Event], upto: int) -> bool:
        """Queue each local event for its destinations; False when nothing was queued."""
        if not self._enabled:
            return False  # the stage still advances, so enabling federation later sends no backlog
        queued: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            if not self.is_ours(event):
                continue
            destinations = sorted(await self.destinations(event))
            for destination in destinations:
                queued.setdefault(destination, []).append({"pdu": event.event_id, "room_id": event.room_id})
            if self._join_edus is not None and destinations and await self._is_new_local_join(event):
                for destination, edus in (await self._join_edus(event, destinations)).items():
                    queued.setdefault(destination, []).extend({"edu": edu} for edu in edus)
        if not queued:
            return False
        await self._store.queue_pdus(queued, stage=HANDOFF_STAGE, upto=upto, now_ms=self._clock.time_ms())
        for destination, items in queued.items():
            await self._bus.publish(OutboundItemsQueued(FEDERATION_KIND, destination, len(items)))
        return True

    def is_ours(self, event: Event) -> bool:
        """Whether we send this event out: accepted, part of the DAG, and sent by one of our users or
        handed to us to pass on (a remote user's join, leave or knock we accepted as resident server)."""
        if event.rejected_reason is not None or event.internal_metadata.get("outlier"):
            return False
        return (server_of(event.sender) == self._server_name
                or bool(event.internal_metadata.get(SEND_ON_BEHALF_OF)))

    async def _is_new_local_join(self, event: Event) -> bool:
        """Whether the event is one of our users joining a room they were not joined to."""
        if (event.type != "m.room.member" or not event.state_key or event.content.get("membership") != "join"
                or server_of(event.state_key) != self._server_name):
            return False
        replaced = event.internal_metadata.get("replaces_state")
        if not replaced:
            return True
        previous = await self._events.get_event(replaced)
        return previous is None or previous.content.get("membership") != "join"

    async def destinations(self, event: Event) -> set[str]:
        """The servers an event of ours goes to (never ourselves, never a refused server)."""
        group = event.internal_metadata.get("state_group")
        if group is None:
            group = await self._events.get_state_group_for_event(event.event_id)
        partial = await self._partial_state.get_room(event.room_id) if self._partial_state is not None else None
        hosts: set[str] = set(await self._joined_hosts(group, cache=partial is None)) if group is not None else set()
        if partial is not None:
            hosts.update(partial.servers_in_room)
        if event.type == "m.room.member" and event.state_key:
            hosts.add(server_of(event.state_key))
        hosts.discard(self._server_name)
        hosts.discard(event.internal_metadata.get(SEND_ON_BEHALF_OF) or "")  # it has the event already
        return {host for host in hosts if _valid_server_name(host) and self._policy.denial_reason(host) is None}

    async def _joined_hosts(self, group: int, *, cache: bool = True) -> frozenset[str]:
        """The servers with joined members in a group's state; not cached for a room with partial
        state, whose groups gain the missing members once its full state arrives."""
        cached = self._hosts.get(group) if cache else None
        if cached is not None:
            self._hosts.move_to_end(group)
            return cached
        state = await self._events.get_state_for_group(group)
        members = [event_id for (event_type, _), event_id in state.items() if event_type == "m.room.member"]
        # Read from the member events themselves: the state a room we joined over federation came
        # with is stored as outliers, which have no room_memberships rows.
        events = await self._events.get_events(members)
        hosts = frozenset(server_of(event.state_key) for event in events.values()
                          if event.state_key and event.content.get("membership") == "join")
        if not cache:
            return hosts
        self._hosts[group] = hosts
        if len(self._hosts) > HOSTS_CACHE_SIZE:
            self._hosts.popitem(last=False)
        return hosts

    # --- EDUs --------------------------------------------------------------------------------
    async def queue_edus(self, destination: str, edus: Sequence[dict[str, Any]]) -> None:
        """Queue EDUs (`{"edu_type": ..., "content": ...}`) for a server; they ride the next transaction."""
        if not self._enabled or destination == self._server_name or not edus:
            return
        if self._policy.denial_reason(destination) is not None:
            return
        await self._store.queue_edus(destination, edus, self._clock.time_ms())
        await self._bus.publish(OutboundItemsQueued(FEDERATION_KIND, destination, len(edus)))
