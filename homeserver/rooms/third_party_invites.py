"""Third-party invites: inviting someone by e-mail address through an identity server.

`POST /rooms/{roomId}/invite` with `id_server`, `id_access_token`, `medium` and `address`: the
identity server is asked (hashed v2 lookup) whether a Matrix ID is bound to the address. If one is,
that user is invited as usual. Otherwise the identity server stores the invite (and tells the
address about it) and answers a token and its public keys, which go into an
`m.room.third_party_invite` state event keyed by the token. When the invitee later binds the
address, the identity server signs `{mxid, token}`; an invite member event carrying that signed
block (`third_party_invite`) passes the auth rules against the stored public keys.
"""

from __future__ import annotations

from typing import Any

from homeserver.accounts.identity import IdentityServerClient
from homeserver.errors import bad_json, forbidden, invalid_param, missing_param, not_found
from homeserver.events.event import Event
from homeserver.rooms.creation import ProfileLookup
from homeserver.rooms.membership import MembershipService
from homeserver.rooms.sender import RoomEventSender
from storage.stores.events import EventStore

THIRD_PARTY_INVITE = "m.room.third_party_invite"
# What the identity server is told about the room, from these state events: (type, content key, field).
_ROOM_DETAILS = (
    ("m.room.name", "name", "room_name"),
    ("m.room.canonical_alias", "alias", "room_alias"),
    ("m.room.avatar", "url", "room_avatar_url"),
    ("m.room.join_rules", "join_rule", "room_join_rules"),
    ("m.room.create", "type", "room_type"),
)


def _required_string(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        raise missing_param(f"{name}: required for a third-party invite")
    if not isinstance(value, str) or not value:
        raise invalid_param(f"{name}: must be a non-empty string")
    return value


class ThirdPartyInviter:
    def __init__(self, identity: IdentityServerClient, membership: MembershipService, sender: RoomEventSender,
                 events: EventStore, profiles: ProfileLookup):
        self._identity = identity
        self._membership = membership
        self._sender = sender
        self._events = events
        self._profiles = profiles

    async def invite(self, sender: str, room_id: str, body: dict[str, Any]) -> Event:
        """Invite the Matrix user bound to the address, or leave an m.room.third_party_invite."""
        medium = _required_string(body, "medium")
        address = _required_string(body, "address")
        id_server = self._identity.check_server(_required_string(body, "id_server"))
        token = _required_string(body, "id_access_token")
        if await self._events.get_room_version_id(room_id) is None:
            raise not_found(f"Unknown room {room_id}")
        # Nobody outside the room makes this server contact an identity server about it.
        membership, _ = await self._events.get_membership(room_id, sender)
        if membership != "join":
            raise forbidden(f"{sender} is not joined to the room")
        mxid = await self._identity.lookup(id_server, token, medium, address)
        if mxid is not None:
            return await self._membership.invite(sender, room_id, mxid, body.get("reason"))
        stored = await self._identity.store_invite(
            id_server, token, {"medium": medium, "address": address, "room_id": room_id, "sender": sender,
                               **await self._details(room_id, sender)})
        keys = [{"public_key": k["public_key"], "key_validity_url": k["key_validity_url"]}
                for k in stored["public_keys"]]
        display_name = stored.get("display_name")
        content = {
            "display_name": display_name if isinstance(display_name, str) and display_name else "an invited user",
            # The long-term key also at the top level, for clients and servers of before `public_keys`.
            "public_key": keys[0]["public_key"],
            "key_validity_url": keys[0]["key_validity_url"],
            "public_keys": keys,
        }
        return await self._sender.send(room_id, sender, THIRD_PARTY_INVITE, content, state_key=stored["token"])

    async def _details(self, room_id: str, sender: str) -> dict[str, str]:
        """The optional store-invite fields: the room's name, alias, avatar, join rule and type, and
        the inviter's display name and avatar."""
        state = await self._events.get_current_state_ids(room_id)
        loaded = await self._events.get_events([state[(t, "")] for t, _, _ in _ROOM_DETAILS if (t, "") in state])
        details: dict[str, str] = {}
        for event_type, key, field in _ROOM_DETAILS:
            event = loaded.get(state.get((event_type, ""), ""))
            value = event.content.get(key) if event is not None else None
            if isinstance(value, str) and value:
                details[field] = value
        profile = await self._profiles(sender) or {}
        for key, field in (("displayname", "sender_display_name"), ("avatar_url", "sender_avatar_url")):
            if isinstance(profile.get(key), str) and profile[key]:
                details[field] = profile[key]
        return details

    async def on_bind(self, body: dict[str, Any]) -> None:
        """`PUT /_matrix/federation/v1/3pid/onbind`: the identity server reports that an address with
        pending invites was bound to `mxid`, with a signed `{mxid, token}` per invite. Each invite to a
        room of this server, from one of its users, becomes an invite member event carrying the signed
        block; the auth rules check it against the room's m.room.third_party_invite keys."""
        mxid = _required_string(body, "mxid")
        invites = body.get("invites", [])
        if not isinstance(invites, list) or not all(isinstance(i, dict) for i in invites):
            raise bad_json("invites: must be a list of objects")
        for index, invite in enumerate(invites):
            signed = invite.get("signed")
            room_id, sender = invite.get("room_id"), invite.get("sender")
            if not isinstance(signed, dict) or not isinstance(signed.get("token"), str):
                raise bad_json(f"invites[{index}].signed: must carry a token")
            if signed.get("mxid") != mxid or invite.get("mxid", mxid) != mxid:
                raise invalid_param(f"invites[{index}]: signed for another user than mxid")
            if not isinstance(room_id, str) or not isinstance(sender, str):
                raise bad_json(f"invites[{index}]: room_id and sender are required")
            if (await self._events.get_room_version_id(room_id) is None
                    or not self._membership.is_local(sender) or not self._membership.is_local(mxid)):
                # A room or user of another server: that server redeems the invite (over federation).
                continue
            state = await self._events.get_current_state_ids(room_id)
            invite_event_id = state.get((THIRD_PARTY_INVITE, signed["token"]))
            if invite_event_id is None:
                raise forbidden(f"invites[{index}]: no pending third-party invite for its token")
            pending = await self._events.get_event(invite_event_id)
            display_name = pending.content.get("display_name") if pending is not None else None
            membership, _ = await self._events.get_membership(room_id, mxid)
            if membership in ("join", "invite"):
                continue
            content: dict[str, Any] = {
                "membership": "invite",
                "third_party_invite": {"display_name": display_name if isinstance(display_name, str) else "",
                                       "signed": signed},
            }
            profile = await self._profiles(mxid) or {}
            for key in ("displayname", "avatar_url"):
                if isinstance(profile.get(key), str):
                    content[key] = profile[key]
            await self._sender.send(room_id, sender, "m.room.member", content, state_key=mxid)
