"""Names used by the authorization rules, so that a typo fails at import, not at runtime."""

from __future__ import annotations

CREATE = "m.room.create"
MEMBER = "m.room.member"
JOIN_RULES = "m.room.join_rules"
POWER_LEVELS = "m.room.power_levels"
THIRD_PARTY_INVITE = "m.room.third_party_invite"
ALIASES = "m.room.aliases"
REDACTION = "m.room.redaction"

CREATE_KEY = (CREATE, "")
POWER_LEVELS_KEY = (POWER_LEVELS, "")
JOIN_RULES_KEY = (JOIN_RULES, "")

JOIN = "join"
INVITE = "invite"
LEAVE = "leave"
BAN = "ban"
KNOCK = "knock"

PUBLIC = "public"
RESTRICTED = "restricted"
KNOCK_RESTRICTED = "knock_restricted"

AUTHORISING_USER = "join_authorised_via_users_server"
