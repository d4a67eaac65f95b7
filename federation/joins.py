"""Membership in rooms of other servers, as the joining server: make_join/send_join (v2),
make_leave/send_leave (v2), make_knock/send_knock, invite (v2) of other servers' users.

Implements the rooms service's `RemoteRooms`. A join asks the candidate servers in turn for a
join template (offering every room version we support), signs the join built from it, and sends
it; the state and auth chain that come back are checked (signatures, hashes, authorization, in
auth order) and persisted as outliers, then the join itself is persisted through the one persist
path with that state as the state before it, which makes the room's state current here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from signedjson.types import SigningKey

from federation.client import FederationClient, FederationError, FederationHttpError, quote_segment
from federation.ingest import EventIngestor
from federation.keys import KeyFetcher, KeyLookup, KeyLookupError
from federation.partial_state import PartialStateResync
from federation.pdu_checks import PduRejected, check_inbound_pdu
from federation.remote_queries import RemoteQueries, client_error
from federation.remote_state import CheckedState, RemoteStateError, auth_state_for, check_room_state
from homeserver.clock import Clock
from homeserver.errors import MatrixError, invalid_param, not_found
from homeserver.event_auth import AuthError, check_auth
from homeserver.events.builder import make_event_id_token
from homeserver.events.event import Event
from homeserver.events.hashing import add_content_hash, compute_event_id
from homeserver.events.room_versions import (
    KNOWN_ROOM_VERSIONS,
    RoomVersion,
    UnsupportedRoomVersion,
    get_room_version,
)
from homeserver.events.signing import (
    SignatureError,
    event_signature_key_ids,
    sign_event,
    verify_event_signature,
)
from homeserver.events.validation import EventValidationError, validate_pdu
from homeserver.identifiers import split_id
from homeserver.rooms.heads import RoomHeads
from homeserver.rooms.persister import EventPersister
from storage.stores.events import EventStore, PersistContext, StateMap
from storage.stores.partial_state import PartialStateStore

logger = logging.getLogger(__name__)

FEDERATION_V1 = "/_matrix/federation/v1"
FEDERATION_V2 = "/_matrix/federation/v2"
# A 400 with one of these from make_join means "this server cannot authorise a restricted join;
# another might" (spec: make_join), so the next server is tried.
JOIN_FAILOVER_ERRCODES = ("M_UNABLE_TO_AUTHORISE_JOIN", "M_UNABLE_TO_GRANT_JOIN")
AUTHORISING_USER = "join_authorised_via_users_server"
# Stripped state sent with an invite (spec, "Stripped state": the recommended set).
STRIPPED_STATE_TYPES = (
    "m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar", "m.room.canonical_alias",
    "m.room.encryption", "m.room.topic",
)


class InvalidAnswer(Exception):
    """A server's answer to make_*/send_* cannot be used; the next server is tried."""


def _fails_over(error: FederationError, extra_errcodes: Sequence[str] = ()) -> bool:
    """Whether another server may succeed where this one failed (as Synapse decides)."""
    if not isinstance(error, FederationHttpError):
        return True  # unreachable, or refused by our own lists: another server may do
    if error.status >= 500 or error.status in (404, 405, 429):
        return True
    return error.status == 400 and error.errcode in extra_errcodes


def stripped_event(event: Event) -> dict[str, Any]:
    return {"type": event.type, "state_key": event.state_key, "content": dict(event.content), "sender": event.sender}


def event_from_template(template: Any, room_version: RoomVersion, *, room_id: str, user_id: str, membership: str,
                        content: Mapping[str, Any], origin: str, signing_key: SigningKey, now_ms: int) -> Event:
    """Our signed membership event, built from a make_join/make_leave/make_knock template."""
    if not isinstance(template, dict):
        raise InvalidAnswer("event: the template is not an object")
    template_content = template.get("content")
    expected = {"type": "m.room.member", "room_id": room_id, "sender": user_id, "state_key": user_id}
    for key, value in expected.items():
        if template.get(key) != value:
            raise InvalidAnswer(f"event.{key}: {template.get(key)!r}, expected {value!r}")
    if not isinstance(template_content, dict) or template_content.get("membership") != membership:
        raise InvalidAnswer(f"event.content.membership: expected {membership!r}")
    pdu = {k: v for k, v in template.items() if k not in ("signatures", "hashes", "unsigned", "event_id", "age_ts")}
    new_content = dict(content)
    if membership == "join" and isinstance(template_content.get(AUTHORISING_USER), str):
        # A restricted room: the resident names one of its users able to invite, and signs the join.
        new_content[AUTHORISING_USER] = template_content[AUTHORISING_USER]
    pdu["content"] = new_content
    if "origin" in pdu:
        pdu["origin"] = origin
    pdu["origin_server_ts"] = now_ms
    if room_version.event_id_in_event:
        pdu["event_id"] = f"${make_event_id_token()}:{origin}"
    signed = sign_event(add_content_hash(pdu), room_version, origin, signing_key)
    try:
        validate_pdu(signed, room_version)
    except EventValidationError as e:
        raise InvalidAnswer(f"event: the template does not make a valid event: {e.message}") from None
    return Event(signed, room_version)


class RemoteMembership:
    """The rooms service's `RemoteRooms`, over federation."""

    def __init__(self, server_name: str, signing_key: SigningKey, client: FederationClient, keys: KeyLookup,
                 queries: RemoteQueries, events: EventStore, persister: EventPersister, heads: RoomHeads,
                 ingestor: EventIngestor, clock: Clock, *, partial_state: PartialStateStore | None = None,
                 resync: PartialStateResync | None = None):
        self._server_name = server_name
        self._signing_key = signing_key
        self._client = client
        self._keys = keys
        self._queries = queries
        self._events = events
        self._persister = persister
        self._heads = heads
        # Remote events of a room are taken under the ingestor's room lock, so a /send racing our
        # join waits for the join's state to be in place.
        self._ingestor = ingestor
        self._clock = clock
        # Faster joins: with both, joins ask for partial state (omit_members) and complete it later.
        self._partial_state = partial_state
        self._resync = resync
        self.supported_versions = sorted(KNOWN_ROOM_VERSIONS)

    # --- aliases ----------------------------------------------------------------------------
    async def resolve_alias(self, alias: str) -> tuple[str, list[str]]:
        answer = await self._queries.query_alias(alias)
        return answer["room_id"], list(answer["servers"])

    # --- the make_* half ----------------------------------------------------------------------
    async def _make(self, server: str, kind: str, room_id: str, user_id: str) -> tuple[RoomVersion, Any]:
        """(room version, template) from make_join/make_leave/make_knock; FederationError or InvalidAnswer."""
        path = f"{FEDERATION_V1}/make_{kind}/{quote_segment(room_id)}/{quote_segment(user_id)}"
        query = None if kind == "leave" else {"ver": self.supported_versions}
        answer = await self._client.get_json(server, path, query)
        if not isinstance(answer, dict):
            raise InvalidAnswer(f"make_{kind}: the answer is not an object")
        version_id = answer.get("room_version", "1")
        try:
            room_version = get_room_version(version_id) if isinstance(version_id, str) else None
        except UnsupportedRoomVersion:
            room_version = None
        if room_version is None:
            raise MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION",
                              f"The room's version {version_id!r} is not supported by this server")
        return room_version, answer.get("event")

    def _build(self, template: Any, room_version: RoomVersion, room_id: str, user_id: str, membership: str,
               content: Mapping[str, Any]) -> Event:
        return event_from_template(template, room_version, room_id=room_id, user_id=user_id, membership=membership,
                                   content=content, origin=self._server_name, signing_key=self._signing_key,
                                   now_ms=self._clock.time_ms())

    async def _through_servers(self, what: str, servers: Sequence[str], attempt, failover_errcodes=()) -> Any:
        """Run `attempt(server)` on each server in turn until one succeeds, as the spec's joining
        server does: errors another server could avoid move on, a refusal ends it."""
        problems: list[str] = []
        for server in servers:
            if server == self._server_name:
                continue
            try:
                return await attempt(server)
            except FederationError as e:
                if not _fails_over(e, failover_errcodes):
                    raise client_error(e, f"{what} via {server}") from None
                problems.append(f"{server}: {e}")
            except (InvalidAnswer, RemoteStateError) as e:
                problems.append(f"{server}: {e}")
            logger.warning("%s via %s failed: %s", what, server, problems[-1])
        if not problems:
            raise not_found(f"{what}: no server to ask")
        raise MatrixError(502, "M_UNKNOWN", f"{what}: failed via every server ({'; '.join(problems)})")

    # --- joining ------------------------------------------------------------------------------
    async def join(self, user_id: str, room_id: str, servers: Sequence[str], content: dict[str, Any]) -> Event:
        async def attempt(server: str) -> Event:
            # The send_join answer is signed by the resident: its keys are fetched meanwhile.
            prefetch = asyncio.ensure_future(self._keys.prefetch(server)) \
                if isinstance(self._keys, KeyFetcher) else None
            started = time.monotonic()
            try:
                room_version, template = await self._make(server, "join", room_id, user_id)
            finally:
                if prefetch is not None and not prefetch.done():
                    prefetch.add_done_callback(lambda f: f.exception())
            made = time.monotonic()
            event = self._build(template, room_version, room_id, user_id, "join", content)
            path = f"{FEDERATION_V2}/send_join/{quote_segment(room_id)}/{quote_segment(event.event_id)}"
            query = {"omit_members": "true"} if self._resync is not None else None
            answer = await self._client.put_json(server, path, dict(event.pdu), query)
            answered = time.monotonic()
            joined = await self._complete_join(server, room_version, event, answer)
            # Where a join's time goes: the resident's two answers, then our checks and commit.
            logger.info("join of %s via %s took %.0f ms: make_join %.0f ms, send_join %.0f ms, checks and "
                        "persisting %.0f ms", room_id, server, (time.monotonic() - started) * 1000,
                        (made - started) * 1000, (answered - made) * 1000, (time.monotonic() - answered) * 1000)
            return joined

        return await self._through_servers(f"Joining {room_id}", servers, attempt, JOIN_FAILOVER_ERRCODES)

    async def _signed_by_authoriser(self, ours: Event, answer: Mapping[str, Any]) -> Event:
        """Our join as the resident returned it, with the authorising server's signature (restricted rooms)."""
        returned = answer.get("event")
        if not isinstance(returned, dict):
            raise InvalidAnswer("send_join: a restricted join came back without the signed event")
        try:
            checked = await check_inbound_pdu(returned, ours.room_version, self._keys)
        except PduRejected as e:
            raise InvalidAnswer(f"send_join: the signed join is not valid: {e.reason}") from None
        if checked.event_id != ours.event_id or checked.redacted_for_hash:
            raise InvalidAnswer("send_join: the signed join is not the event we sent")
        return Event(checked.pdu, ours.room_version, event_id=checked.event_id)

    async def _complete_join(self, server: str, room_version: RoomVersion, event: Event, answer: Any) -> Event:
        if not isinstance(answer, dict):
            raise InvalidAnswer("send_join: the answer is not an object")
        room_id = event.room_id
        if isinstance(event.content.get(AUTHORISING_USER), str):
            event = await self._signed_by_authoriser(event, answer)
        state_pdus, chain_pdus = answer.get("state"), answer.get("auth_chain")
        ids = [p.get("event_id") for p in [*(state_pdus or []), *(chain_pdus or [])] if isinstance(p, dict)]
        known = await self._events.get_events([i for i in ids if isinstance(i, str)]) if room_version.event_id_in_event \
            else {}
        checked = await check_room_state(state_pdus, chain_pdus, room_id, room_version, self._keys, known)
        partial = answer.get("members_omitted") is True and self._resync is not None
        state_events = checked.state_events()
        auth_state = auth_state_for(event, state_events, room_version)
        if partial:
            # Members the join's authorization needs (an authorising user's) came in the auth chain.
            for auth_id in event.auth_event_ids:
                auth_event = checked.events.get(auth_id)
                if auth_event is not None and auth_event.is_state() and auth_event.rejected_reason is None:
                    auth_state.setdefault(auth_event.state_tuple(), auth_event)
        try:
            check_auth(event, auth_state, room_version)
        except AuthError as e:
            raise InvalidAnswer(f"send_join: our join is not allowed by the room's state: {e}") from None
        if partial:
            await self._persist_partial_join(server, room_version, event, checked, answer.get("servers_in_room"))
        else:
            await self._persist_join(room_version, event, checked)
        logger.info("joined %s via %s: %d state events%s, %d in the auth chain", room_id, server,
                    len(checked.state), " (members omitted)" if partial else "",
                    len(checked.events) - len(checked.state))
        return event

    async def _persist_partial_join(self, server: str, room_version: RoomVersion, join: Event,
                                    checked: CheckedState, servers_in_room: Any) -> None:
        """Persist a join whose state lacks most members: marked partial first (so a crash before
        the join commits leaves a mark that names nothing, dropped on resume), then the background
        fetch of the full state is started."""
        assert self._partial_state is not None and self._resync is not None
        servers = [s for s in servers_in_room if isinstance(s, str)] if isinstance(servers_in_room, list) else []
        if server not in servers:
            servers.insert(0, server)
        await self._partial_state.mark_partial(join.room_id, join.event_id, server, servers, self._clock.time_ms())
        try:
            await self._persist_join(room_version, join, checked)
        except BaseException:
            await self._partial_state.forget(join.room_id, join.event_id)
            raise
        self._resync.schedule(join.room_id)

    async def _ensure_room(self, room_id: str, room_version: RoomVersion, create: Event | None) -> None:
        stored = await self._events.get_room_version_id(room_id)
        if stored is None:
            creator = create.sender if create is not None else None
            created = create.origin_server_ts if create is not None else self._clock.time_ms()
            await self._events.ensure_room(room_id, room_version.identifier, creator, created)
        elif stored != room_version.identifier:
            raise InvalidAnswer(f"the room is of version {stored} here, not {room_version.identifier}")

    async def _persist_outliers(self, events: Sequence[Event], *, wait: bool = True) -> None:
        """Persist events we do not hold yet as outliers, in the given (auth) order (queued only
        with `wait=False`: an event of the room queued after them commits with or after them)."""
        held = await self._events.get_events([e.event_id for e in events])
        now = self._clock.time_ms()
        last = None
        for event in events:
            if event.event_id in held:
                continue
            context = PersistContext(state_group=None, outlier=True, received_ts=now)
            last = self._persister.enqueue(event, context)[0]
        if last is not None and wait:
            await last  # the room's events commit in order: the last one's commit covers them all

    async def _persist_join(self, room_version: RoomVersion, join: Event, checked: CheckedState) -> None:
        async with self._ingestor.room_lock(join.room_id):
            await self._persist_join_locked(room_version, join, checked)

    async def _persist_join_locked(self, room_version: RoomVersion, join: Event, checked: CheckedState) -> None:
        room_id = join.room_id
        await self._ensure_room(room_id, room_version, checked.create_event())
        # Queued without waiting: the join, queued next, commits in the same batch or after them
        # (and fails with them: the persister fails the rest of a room's queue with its first).
        await self._persist_outliers(list(checked.events.values()), wait=False)
        member_key = ("m.room.member", join.state_key or "")
        state_after: StateMap = {**checked.state, member_key: join.event_id}
        memberships = {event_id: checked.events[event_id].membership for (t, _), event_id in checked.state.items()
                       if t == "m.room.member" and event_id in checked.events}
        memberships[join.event_id] = "join"
        async with self._heads.lock(room_id):
            extremities = await self._events.get_forward_extremities(room_id)
            context = PersistContext(
                state_group=None, state_before=dict(checked.state), new_group_delta={member_key: join.event_id},
                current_state_delta=state_after, current_state_is_full=True, replaces_extremities=extremities,
                memberships=memberships, received_ts=self._clock.time_ms())
            try:
                await self._persister.persist(join, context)
            finally:
                self._heads.forget(room_id)

    # --- leaving (rejecting invites, withdrawing knocks) -----------------------------------------
    async def leave(self, user_id: str, room_id: str, servers: Sequence[str], content: dict[str, Any]) -> Event:
        async def attempt(server: str) -> Event:
            room_version, template = await self._make(server, "leave", room_id, user_id)
            event = self._build(template, room_version, room_id, user_id, "leave", content)
            path = f"{FEDERATION_V2}/send_leave/{quote_segment(room_id)}/{quote_segment(event.event_id)}"
            await self._client.put_json(server, path, dict(event.pdu))
            await self._persist_out_of_band(room_version, event, None)
            return event

        return await self._through_servers(f"Leaving {room_id}", servers, attempt)

    # --- knocking -------------------------------------------------------------------------------
    async def knock(self, user_id: str, room_id: str, servers: Sequence[str], content: dict[str, Any]) -> Event:
        async def attempt(server: str) -> Event:
            room_version, template = await self._make(server, "knock", room_id, user_id)
            if not room_version.knock_join_rule:
                raise MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION",
                                  f"Room version {room_version.identifier} does not allow knocking")
            event = self._build(template, room_version, room_id, user_id, "knock", content)
            path = f"{FEDERATION_V1}/send_knock/{quote_segment(room_id)}/{quote_segment(event.event_id)}"
            answer = await self._client.put_json(server, path, dict(event.pdu))
            stripped = answer.get("knock_room_state") if isinstance(answer, dict) else None
            if stripped is None and isinstance(answer, dict):
                stripped = answer.get("knock_state_events")  # the name before spec v1.?
            if not isinstance(stripped, list):
                raise InvalidAnswer("send_knock: no knock_room_state list")
            await self._persist_out_of_band(room_version, event, [s for s in stripped if isinstance(s, dict)])
            return event

        return await self._through_servers(f"Knocking on {room_id}", servers, attempt)

    async def _persist_out_of_band(self, room_version: RoomVersion, event: Event,
                                   stripped: list[dict[str, Any]] | None) -> None:
        """A membership of a local user in a room this server is not in: an outlier that becomes the
        user's membership, so /sync lists the knock (with the stripped state) or the rejection."""
        if stripped is not None:
            # Kept where inbound invites keep theirs: /sync shows it as the knock's stripped state.
            event.internal_metadata["invite_room_state"] = stripped
        await self._ingestor.persist_out_of_band_membership(event)

    # --- inviting other servers' users --------------------------------------------------------------
    async def invite(self, event: Event, state: StateMap) -> Event:
        invitee = event.state_key or ""
        try:
            server = split_id(invitee, "@")[1]
        except ValueError:
            raise invalid_param(f"user_id: {invitee!r} is not a user ID") from None
        stripped_ids = [state[(t, "")] for t in STRIPPED_STATE_TYPES if (t, "") in state]
        inviter_member = state.get(("m.room.member", event.sender))
        if inviter_member is not None:
            stripped_ids.append(inviter_member)
        loaded = await self._events.get_events(stripped_ids)
        invite_room_state = [stripped_event(loaded[i]) for i in stripped_ids if i in loaded]
        path = f"{FEDERATION_V2}/invite/{quote_segment(event.room_id)}/{quote_segment(event.event_id)}"
        body = {"event": dict(event.pdu), "room_version": event.room_version.identifier,
                "invite_room_state": invite_room_state}
        try:
            answer = await self._client.put_json(server, path, body)
        except FederationError as e:
            raise client_error(e, f"Inviting {invitee}") from None
        returned = answer.get("event") if isinstance(answer, dict) else None
        if not isinstance(returned, dict):
            raise MatrixError(502, "M_UNKNOWN", f"Inviting {invitee}: {server} answered without the signed event")
        return await self._countersigned(event, returned, server)

    async def _countersigned(self, ours: Event, returned: dict[str, Any], server: str) -> Event:
        """Our invite with the invitee's server's signature added, once that signature verifies."""
        room_version = ours.room_version
        try:
            same = compute_event_id(returned, room_version) == ours.event_id
        except Exception:
            same = False
        if not same:
            raise MatrixError(502, "M_UNKNOWN", f"{server} returned another event than the invite we sent")
        key_ids = event_signature_key_ids(returned, server)
        if not key_ids:
            raise MatrixError(502, "M_UNKNOWN", f"{server} did not sign the invite")
        valid_at = ours.origin_server_ts if room_version.enforce_key_validity else 0
        for key_id in key_ids:
            try:
                key = await self._keys.get_verify_key(server, key_id, valid_at_ts=valid_at)
                verify_event_signature(returned, room_version, server, key)
            except (KeyLookupError, ValueError, SignatureError) as e:
                raise MatrixError(502, "M_UNKNOWN", f"{server}'s signature on the invite does not verify: {e}") from None
        pdu = dict(ours.pdu)
        signatures = {name: dict(sigs) for name, sigs in pdu.get("signatures", {}).items()}
        signatures[server] = dict(returned["signatures"][server])
        pdu["signatures"] = signatures
        return Event(pdu, room_version, event_id=ours.event_id)

