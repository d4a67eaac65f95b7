"""The redaction algorithm of every room version (rooms/vN.md, "Redactions").

One function serves both uses: stripping an event before computing its reference hash
or signature, and producing the stored form of an event that was redacted. The rules
are tables derived once per room version from its flags.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from homeserver.events.room_versions import RoomVersion

# Top-level keys every room version keeps.
_ESSENTIAL_KEYS = frozenset(
    {
        "event_id",
        "type",
        "room_id",
        "sender",
        "state_key",
        "content",
        "hashes",
        "signatures",
        "depth",
        "prev_events",
        "auth_events",
        "origin_server_ts",
    }
)
# Kept before v11, whose redaction rules stopped protecting them.
_PRE_V11_EXTRA_KEYS = frozenset({"prev_state", "origin", "membership"})

ALL_KEYS = None  # marker in a content table: keep the whole content


@dataclass(frozen=True, slots=True)
class RedactionRules:
    """What survives redaction in one room version."""

    top_level: frozenset[str]
    # event type -> content keys kept (ALL_KEYS keeps everything); other types keep none.
    content: Mapping[str, frozenset[str] | None]
    # v11: m.room.member keeps `third_party_invite.signed` (and nothing else of it).
    member_keeps_third_party_invite_signed: bool


def _build_rules(rv: RoomVersion) -> RedactionRules:
    v11 = rv.updated_redaction_rules
    member = {"membership"}
    if rv.restricted_join_rule_fix:
        member.add("join_authorised_via_users_server")
    join_rules = {"join_rule"}
    if rv.restricted_join_rule:
        join_rules.add("allow")
    power_levels = {
        "ban",
        "events",
        "events_default",
        "kick",
        "redact",
        "state_default",
        "users",
        "users_default",
    }
    if v11:
        power_levels.add("invite")
    content: dict[str, frozenset[str] | None] = {
        "m.room.member": frozenset(member),
        "m.room.create": ALL_KEYS if v11 else frozenset({"creator"}),
        "m.room.join_rules": frozenset(join_rules),
        "m.room.power_levels": frozenset(power_levels),
        "m.room.history_visibility": frozenset({"history_visibility"}),
    }
    if rv.special_case_aliases_auth:
        content["m.room.aliases"] = frozenset({"aliases"})
    if v11:
        content["m.room.redaction"] = frozenset({"redacts"})
    return RedactionRules(
        top_level=_ESSENTIAL_KEYS if v11 else _ESSENTIAL_KEYS | _PRE_V11_EXTRA_KEYS,
        content=content,
        member_keeps_third_party_invite_signed=v11,
    )


_RULES_CACHE: dict[RoomVersion, RedactionRules] = {}


def redaction_rules(room_version: RoomVersion) -> RedactionRules:
    """The (cached) redaction table of a room version."""
    rules = _RULES_CACHE.get(room_version)
    if rules is None:
        rules = _RULES_CACHE[room_version] = _build_rules(room_version)
    return rules


def redact(pdu: Mapping[str, Any], room_version: RoomVersion) -> dict[str, Any]:
    """The redacted copy of `pdu` under `room_version`'s rules.

    The result is a new top-level dict with a new `content` dict, but kept values are
    shared with `pdu` (no deep copy, this is on the hashing hot path): treat both as
    read-only or copy before mutating nested values. `unsigned` is always dropped;
    callers storing a redacted event add their own (e.g. `redacted_because`).
    """
    rules = redaction_rules(room_version)
    top = rules.top_level
    out = {k: v for k, v in pdu.items() if k in top}

    content = pdu.get("content")
    new_content: dict[str, Any] = {}
    if isinstance(content, Mapping):
        event_type = pdu.get("type")
        keep = rules.content.get(event_type, frozenset()) if isinstance(event_type, str) else frozenset()
        if keep is ALL_KEYS:
            new_content = dict(content)
        else:
            new_content = {k: v for k, v in content.items() if k in keep}
            if rules.member_keeps_third_party_invite_signed and event_type == "m.room.member":
                tpi = content.get("third_party_invite")
                if isinstance(tpi, Mapping):
                    # An object without `signed` still leaves an empty object behind, as
                    # in Synapse; this is hashed, so it decides v11+ event IDs.
                    new_content["third_party_invite"] = {"signed": tpi["signed"]} if "signed" in tpi else {}
    out["content"] = new_content
    return out
