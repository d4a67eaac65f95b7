"""Application service registrations: the YAML files bridges generate, loaded and validated at start-up.

A registration names the service (`id`), where the homeserver reaches it (`url`, may be null),
the two shared secrets (`as_token` the service presents to us, `hs_token` we present to it), its
bot user (`sender_localpart`) and the user, alias and room namespaces it claims. Loading reports
every problem of every file at once, one line each, before the server starts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import yaml

from homeserver.config import ConfigError

NAMESPACE_KINDS = ("users", "aliases", "rooms")
UNSTABLE_PUSH_EPHEMERAL = "de.sorunome.msc2409.push_ephemeral"
MSC3202 = "org.matrix.msc3202"
MSC4190 = "io.element.msc4190"


@dataclass(frozen=True)
class Namespace:
    regex: re.Pattern[str]
    exclusive: bool

    def matches(self, value: str) -> bool:
        # Anchored at the start like Synapse, so `@irc_.*` claims `@irc_alice:example.org`.
        return self.regex.match(value) is not None


@dataclass(frozen=True)
class AppServiceRegistration:
    id: str
    url: str | None
    as_token: str
    hs_token: str
    sender: str
    users: tuple[Namespace, ...] = ()
    aliases: tuple[Namespace, ...] = ()
    rooms: tuple[Namespace, ...] = ()
    rate_limited: bool = True
    protocols: tuple[str, ...] = ()
    receive_ephemeral: bool = False
    unstable_ephemeral: bool = False
    msc3202: bool = False
    msc4190: bool = False
    source: str = field(default="", compare=False)

    # --- namespaces -----------------------------------------------------------------------
    def is_interested_in_user(self, user_id: str) -> bool:
        """The sender, or a user in the users namespace: the users this service may act as."""
        return user_id == self.sender or any(ns.matches(user_id) for ns in self.users)

    def is_exclusive_user(self, user_id: str) -> bool:
        return user_id == self.sender or any(ns.exclusive and ns.matches(user_id) for ns in self.users)

    def is_interested_in_alias(self, alias: str) -> bool:
        return any(ns.matches(alias) for ns in self.aliases)

    def is_exclusive_alias(self, alias: str) -> bool:
        return any(ns.exclusive and ns.matches(alias) for ns in self.aliases)

    def is_interested_in_room(self, room_id: str) -> bool:
        return any(ns.matches(room_id) for ns in self.rooms)

    @property
    def wants_ephemeral(self) -> bool:
        return self.receive_ephemeral or self.unstable_ephemeral


def _namespaces(raw: Any, kind: str, where: str, problems: list[str]) -> tuple[Namespace, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append(f"{where}: namespaces.{kind}: expected a list, got {type(raw).__name__}")
        return ()
    out = []
    for index, entry in enumerate(raw):
        at = f"{where}: namespaces.{kind}[{index}]"
        if not isinstance(entry, dict):
            problems.append(f"{at}: expected a mapping with regex and exclusive")
            continue
        regex, exclusive = entry.get("regex"), entry.get("exclusive")
        if not isinstance(regex, str):
            problems.append(f"{at}.regex: expected a string")
            continue
        if not isinstance(exclusive, bool):
            problems.append(f"{at}.exclusive: expected true or false")
            continue
        try:
            out.append(Namespace(re.compile(regex), exclusive))
        except re.error as e:
            problems.append(f"{at}.regex: not a valid regular expression: {e}")
    return tuple(out)


def _flag(raw: dict[str, Any], key: str, where: str, problems: list[str], default: bool = False) -> bool:
    value = raw.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        problems.append(f"{where}: {key}: expected true or false")
        return default
    return value


def parse_registration(raw: Any, server_name: str, where: str,
                       problems: list[str]) -> AppServiceRegistration | None:
    """One registration from its YAML mapping; appends a line to `problems` per defect."""
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a mapping of registration fields")
        return None
    before = len(problems)
    for key in ("id", "as_token", "hs_token", "sender_localpart"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            problems.append(f"{where}: {key}: required, expected a non-empty string")
    # `url` must be present: null (explicitly no pushing) is allowed, a missing key is a typo.
    if "url" not in raw:
        problems.append(f"{where}: url: required, expected a URL or null")
    elif raw["url"] is not None and (not isinstance(raw["url"], str) or not re.match(r"^https?://", raw["url"])):
        problems.append(f"{where}: url: expected an http(s) URL or null")
    localpart = raw.get("sender_localpart")
    if isinstance(localpart, str) and localpart and quote(localpart) != localpart:
        problems.append(f"{where}: sender_localpart: must not need URL encoding")
    namespaces = raw.get("namespaces")
    if namespaces is None:
        namespaces = {}
    if not isinstance(namespaces, dict):
        problems.append(f"{where}: namespaces: expected a mapping of users, aliases and rooms")
        namespaces = {}
    parsed = {kind: _namespaces(namespaces.get(kind), kind, where, problems) for kind in NAMESPACE_KINDS}
    protocols = raw.get("protocols") or []
    if not isinstance(protocols, list) or not all(isinstance(p, str) for p in protocols):
        problems.append(f"{where}: protocols: expected a list of strings")
        protocols = []
    rate_limited = raw.get("rate_limited", True)
    if not isinstance(rate_limited, bool):
        # Synapse treats anything but a boolean as the default; a typo should not silently unthrottle.
        problems.append(f"{where}: rate_limited: expected true or false")
        rate_limited = True
    flags = {
        "receive_ephemeral": _flag(raw, "receive_ephemeral", where, problems),
        "unstable_ephemeral": _flag(raw, UNSTABLE_PUSH_EPHEMERAL, where, problems),
        "msc3202": _flag(raw, MSC3202, where, problems),
        "msc4190": _flag(raw, MSC4190, where, problems),
    }
    if len(problems) > before:
        return None
    return AppServiceRegistration(
        id=raw["id"], url=raw["url"].rstrip("/") if raw["url"] else None, as_token=raw["as_token"],
        hs_token=raw["hs_token"], sender=f"@{localpart}:{server_name}",
        users=parsed["users"], aliases=parsed["aliases"], rooms=parsed["rooms"],
        rate_limited=rate_limited, protocols=tuple(protocols), source=where, **flags,
    )


def check_unique(registrations: Sequence[AppServiceRegistration], problems: list[str]) -> None:
    """Refuse two registrations sharing an ID, an as_token or a sender."""
    for attribute, label in (("id", "id"), ("as_token", "as_token"), ("sender", "sender_localpart")):
        seen: dict[str, str] = {}
        for registration in registrations:
            value = getattr(registration, attribute)
            if value in seen:
                shown = value if attribute != "as_token" else "(the same token)"
                problems.append(f"{registration.source}: {label}: {shown} is already used by {seen[value]}")
            else:
                seen[value] = registration.source


def load_registrations(paths: Iterable[str], server_name: str) -> list[AppServiceRegistration]:
    """Every registration file, validated together; ConfigError lists every problem, one per line."""
    problems: list[str] = []
    registrations: list[AppServiceRegistration] = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                raw = yaml.safe_load(f)
        except OSError as e:
            problems.append(f"{path}: cannot read the registration file: {e.strerror or e}")
            continue
        except yaml.YAMLError as e:
            problems.append(f"{path}: not valid YAML: {e}")
            continue
        registration = parse_registration(raw, server_name, path, problems)
        if registration is not None:
            registrations.append(registration)
    check_unique(registrations, problems)
    if problems:
        raise ConfigError(problems)
    return registrations
