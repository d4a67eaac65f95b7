"""The auth rule "If type is m.room.member", for every room version.

Each membership value has its own small function; `check_membership` dispatches on
the table `_MEMBERSHIP_CHECKS`. Version differences are asked of RoomVersion flags.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from signedjson.key import decode_verify_key_bytes
from signedjson.sign import SignatureVerifyException, verify_signed_json
from unpaddedbase64 import decode_base64

from homeserver.event_auth.constants import (
    AUTHORISING_USER,
    BAN,
    INVITE,
    JOIN,
    JOIN_RULES_KEY,
    KNOCK,
    KNOCK_RESTRICTED,
    LEAVE,
    MEMBER,
    POWER_LEVELS_KEY,
    PUBLIC,
    RESTRICTED,
    THIRD_PARTY_INVITE,
)
from homeserver.event_auth.errors import AuthError
from homeserver.event_auth.ids import domain_of
from homeserver.event_auth.power_levels import get_named_level, user_level
from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion

StateMap = Mapping[tuple[str, str], Event]


class _MembershipContext:
    """What every membership rule looks at, computed once per event."""

    __slots__ = ("event", "state", "room_version", "create", "power_levels", "sender", "target")

    def __init__(self, event: Event, state: StateMap, room_version: RoomVersion, create: Event, target: str):
        self.event = event
        self.state = state
        self.room_version = room_version
        self.create = create
        pl_event = state.get(POWER_LEVELS_KEY)
        self.power_levels = pl_event.content if pl_event is not None else None
        self.sender = event.sender
        self.target = target

    def membership_of(self, user_id: str) -> str | None:
        member = self.state.get((MEMBER, user_id))
        return member.membership if member is not None else None

    def level_of(self, user_id: str) -> int | float:
        return user_level(user_id, self.power_levels, self.create, self.room_version)

    def named_level(self, name: str) -> int:
        return get_named_level(self.power_levels, name)

    def join_rule(self) -> str:
        join_rules = self.state.get(JOIN_RULES_KEY)
        if join_rules is None:
            # The spec leaves a room without join rules undefined; like Synapse we treat
            # it as invite-only so members can still update their own member event.
            return INVITE
        rule = join_rules.content.get("join_rule")
        return rule if isinstance(rule, str) else ""


def check_membership(event: Event, state: StateMap, room_version: RoomVersion, create: Event) -> None:
    """Auth rules for an m.room.member event; raises AuthError unless it is allowed."""
    state_key = event.state_key
    if not isinstance(state_key, str):
        raise AuthError("member event has no state_key")
    membership = event.content.get("membership")
    if not isinstance(membership, str):
        raise AuthError("member event has no membership")

    if room_version.restricted_join_rule and AUTHORISING_USER in event.content:
        _check_authorising_server_signed(event)

    check = _MEMBERSHIP_CHECKS.get(membership)
    if check is None or (membership == KNOCK and not room_version.knock_join_rule):
        raise AuthError(f"unknown membership {membership!r}")
    check(_MembershipContext(event, state, room_version, create, state_key))


def _check_authorising_server_signed(event: Event) -> None:
    # The signature itself is verified with the other signatures on receipt of the PDU;
    # the auth rules require that the authorising server's signature is there at all.
    authoriser = event.content[AUTHORISING_USER]
    if not isinstance(authoriser, str):
        raise AuthError(f"{AUTHORISING_USER} is not a user ID")
    if not event.signatures.get(domain_of(authoriser)):
        raise AuthError(f"event is not signed by the server of {AUTHORISING_USER} {authoriser}")


# --- join ---------------------------------------------------------------------------


def _check_join(ctx: _MembershipContext) -> None:
    if _is_creator_first_join(ctx):
        return
    if ctx.sender != ctx.target:
        raise AuthError("cannot join on behalf of another user")
    current = ctx.membership_of(ctx.sender)
    if current == BAN:
        raise AuthError(f"{ctx.sender} is banned from the room")

    rule = ctx.join_rule()
    rv = ctx.room_version
    if rule == INVITE or (rule == KNOCK and rv.knock_join_rule):
        if current in (INVITE, JOIN):
            return
        raise AuthError(f"{ctx.sender} is not invited to this {rule} room")
    if (rule == RESTRICTED and rv.restricted_join_rule) or (
        rule == KNOCK_RESTRICTED and rv.knock_restricted_join_rule
    ):
        if current in (INVITE, JOIN):
            return
        _check_join_authorised(ctx)
        return
    if rule == PUBLIC:
        return
    raise AuthError(f"join rule {rule!r} does not allow joining")


def _is_creator_first_join(ctx: _MembershipContext) -> bool:
    prev_events = ctx.event.prev_event_ids
    if len(prev_events) != 1 or prev_events[0] != ctx.create.event_id:
        return False
    if ctx.room_version.implicit_room_creator:
        return ctx.target == ctx.create.sender
    return ctx.target == ctx.create.content.get("creator")


def _check_join_authorised(ctx: _MembershipContext) -> None:
    authoriser = ctx.event.content.get(AUTHORISING_USER)
    if not isinstance(authoriser, str):
        raise AuthError(f"restricted join without {AUTHORISING_USER}")
    if ctx.membership_of(authoriser) != JOIN:
        raise AuthError(f"authorising user {authoriser} is not joined to the room")
    if ctx.level_of(authoriser) < ctx.named_level("invite"):
        raise AuthError(f"authorising user {authoriser} may not invite")


# --- invite -------------------------------------------------------------------------


def _check_invite(ctx: _MembershipContext) -> None:
    if "third_party_invite" in ctx.event.content:
        _check_third_party_invite(ctx)
        return
    if ctx.membership_of(ctx.sender) != JOIN:
        raise AuthError(f"{ctx.sender} is not joined to the room")
    target_membership = ctx.membership_of(ctx.target)
    if target_membership in (JOIN, BAN):
        raise AuthError(f"{ctx.target} cannot be invited: membership is {target_membership}")
    if ctx.level_of(ctx.sender) < ctx.named_level("invite"):
        raise AuthError(f"{ctx.sender} does not have the invite level")


def _check_third_party_invite(ctx: _MembershipContext) -> None:
    if ctx.membership_of(ctx.target) == BAN:
        raise AuthError(f"{ctx.target} is banned from the room")
    third_party_invite = ctx.event.content["third_party_invite"]
    signed = third_party_invite.get("signed") if isinstance(third_party_invite, Mapping) else None
    if not isinstance(signed, Mapping):
        raise AuthError("third_party_invite has no signed object")
    mxid = signed.get("mxid")
    token = signed.get("token")
    if not isinstance(mxid, str) or not isinstance(token, str):
        raise AuthError("third_party_invite.signed lacks mxid or token")
    if mxid != ctx.target:
        raise AuthError("third_party_invite.signed.mxid does not match the state_key")
    invite_event = ctx.state.get((THIRD_PARTY_INVITE, token))
    if invite_event is None:
        raise AuthError("no m.room.third_party_invite for this token")
    if invite_event.sender != ctx.sender:
        raise AuthError("sender did not send the m.room.third_party_invite")
    if not third_party_signature_matches(signed, invite_event.content):
        raise AuthError("no signature in third_party_invite.signed matches the invite's public keys")


def third_party_signature_matches(signed: Mapping[str, Any], invite_content: Mapping[str, Any]) -> bool:
    """Whether any ed25519 signature in `signed` verifies with any public key of the invite."""
    signatures = signed.get("signatures")
    if not isinstance(signatures, Mapping):
        return False
    for public_key in _public_keys(invite_content):
        try:
            key_bytes = decode_base64(public_key)
        except (ValueError, UnicodeEncodeError):
            continue
        for server, server_signatures in signatures.items():
            if not isinstance(server_signatures, Mapping):
                continue
            for key_id in server_signatures:
                if not isinstance(key_id, str) or not key_id.startswith("ed25519:"):
                    continue
                try:
                    verify_key = decode_verify_key_bytes(key_id, key_bytes)
                    verify_signed_json(signed, server, verify_key)
                except (SignatureVerifyException, ValueError, TypeError):
                    continue
                return True
    return False


def _public_keys(invite_content: Mapping[str, Any]) -> list[str]:
    keys = []
    single = invite_content.get("public_key")
    if isinstance(single, str):
        keys.append(single)
    listed = invite_content.get("public_keys")
    if isinstance(listed, list):
        for entry in listed:
            if isinstance(entry, Mapping) and isinstance(entry.get("public_key"), str):
                keys.append(entry["public_key"])
    return keys


# --- leave, ban, knock --------------------------------------------------------------


def _check_leave(ctx: _MembershipContext) -> None:
    sender_membership = ctx.membership_of(ctx.sender)
    if ctx.sender == ctx.target:
        allowed = (INVITE, JOIN, KNOCK) if ctx.room_version.knock_join_rule else (INVITE, JOIN)
        if sender_membership in allowed:
            return
        raise AuthError(f"{ctx.sender} cannot leave with membership {sender_membership}")
    if sender_membership != JOIN:
        raise AuthError(f"{ctx.sender} is not joined to the room")
    sender_level = ctx.level_of(ctx.sender)
    if ctx.membership_of(ctx.target) == BAN and sender_level < ctx.named_level("ban"):
        raise AuthError(f"{ctx.sender} does not have the ban level needed to unban")
    if sender_level >= ctx.named_level("kick") and ctx.level_of(ctx.target) < sender_level:
        return
    raise AuthError(f"{ctx.sender} may not kick {ctx.target}")


def _check_ban(ctx: _MembershipContext) -> None:
    if ctx.membership_of(ctx.sender) != JOIN:
        raise AuthError(f"{ctx.sender} is not joined to the room")
    sender_level = ctx.level_of(ctx.sender)
    if sender_level >= ctx.named_level("ban") and ctx.level_of(ctx.target) < sender_level:
        return
    raise AuthError(f"{ctx.sender} may not ban {ctx.target}")


def _check_knock(ctx: _MembershipContext) -> None:
    rule = ctx.join_rule()
    if not (rule == KNOCK or (rule == KNOCK_RESTRICTED and ctx.room_version.knock_restricted_join_rule)):
        raise AuthError(f"join rule {rule!r} does not allow knocking")
    if ctx.sender != ctx.target:
        raise AuthError("cannot knock on behalf of another user")
    current = ctx.membership_of(ctx.sender)
    if current in (BAN, INVITE, JOIN):
        raise AuthError(f"{ctx.sender} cannot knock with membership {current}")


_MEMBERSHIP_CHECKS: Mapping[str, Callable[[_MembershipContext], None]] = {
    JOIN: _check_join,
    INVITE: _check_invite,
    LEAVE: _check_leave,
    BAN: _check_ban,
    KNOCK: _check_knock,
}
