"""The export archive, pure: URL extraction, room kinds, `export.json` assembly, `index.html`, the ZIP.

The schema is documented in docs/privacy-export.md; `EXPORT_CLASSES` lists every top-level data
class, and `assemble` always writes each one (empty, or named in `unreachable` when the homeserver
could not provide it).
"""

from __future__ import annotations

import html
import io
import re
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

FORMAT = "huiskamer-privacy-export"
FORMAT_VERSION = 1
ROOM_KINDS = ("private", "group", "public")
EXPORT_CLASSES = ("profile", "threepids", "devices", "connections", "logins", "account_data", "push_rules",
                  "pushers", "presence", "rooms", "messages", "media", "links", "consent", "reports",
                  "privacy_requests", "payment_details")
PAYMENT_STATEMENT = {
    "held": False,
    "statement": {
        "en": "This server holds no payment details. Payments, if any, are handled outside the chat platform.",
        "nl": "Deze server bewaart geen betaalgegevens. Eventuele betalingen lopen buiten het chatplatform om.",
    },
}

# http(s) URLs, and www. hosts without a scheme; trailing punctuation is not part of the link.
URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"'`]+", re.IGNORECASE)
TRAILING = ".,;:!?)]}'\""


def extract_urls(text: str) -> list[str]:
    """Every link in a message body, in order, duplicates kept once."""
    found: list[str] = []
    for match in URL.finditer(text or ""):
        url = match.group(0)
        while url and url[-1] in TRAILING:
            if url[-1] == ")" and url.count("(") >= url.count(")"):
                break
            url = url[:-1]
        if url and url not in found:
            found.append(url)
    return found


def event_urls(event: dict[str, Any]) -> list[str]:
    content = event.get("content") or {}
    texts = [content.get("body"), content.get("formatted_body")]
    new = content.get("m.new_content")
    if isinstance(new, dict):
        texts.append(new.get("body"))
    urls: list[str] = []
    for value in texts:
        if isinstance(value, str):
            for url in extract_urls(value):
                if url not in urls:
                    urls.append(url)
    return urls


def room_kind(room_id: str, direct_rooms: set[str], details: dict[str, Any] | None) -> str:
    """private (a DM: in m.direct, or unnamed with at most two members), public (anyone may join), or group."""
    details = details or {}
    if room_id in direct_rooms:
        return "private"
    if details.get("join_rules") == "public" or details.get("public"):
        return "public"
    members = details.get("joined_members")
    if not details.get("name") and isinstance(members, int) and members <= 2:
        return "private"
    return "group"


def servers_of(members: list[str]) -> list[str]:
    return sorted({m.split(":", 1)[1] for m in members if ":" in m})


@dataclass
class Collected:
    """What the collector fetched; `assemble` turns it into export.json."""

    user_id: str
    request_id: str
    generated_ts: int
    profile: dict[str, Any] = field(default_factory=dict)
    threepids: list[dict[str, Any]] = field(default_factory=list)
    devices: list[dict[str, Any]] = field(default_factory=list)
    connections: list[dict[str, Any]] = field(default_factory=list)
    logins: list[dict[str, Any]] = field(default_factory=list)
    account_data: dict[str, Any] = field(default_factory=lambda: {"global": {}, "rooms": {}})
    push_rules: dict[str, Any] = field(default_factory=dict)
    pushers: list[dict[str, Any]] = field(default_factory=list)
    presence: dict[str, Any] = field(default_factory=dict)
    rooms: list[dict[str, Any]] = field(default_factory=list)  # each with room_id and kind
    events: list[dict[str, Any]] = field(default_factory=list)
    media: list[dict[str, Any]] = field(default_factory=list)  # listing entries, with "bytes" when fetched
    consent: dict[str, Any] = field(default_factory=dict)
    reports: dict[str, Any] = field(default_factory=dict)
    privacy_requests: list[dict[str, Any]] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)


def media_filename(entry: dict[str, Any]) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", str(entry.get("upload_name") or ""))[:80]
    return f"media/{entry['media_id']}" + (f"-{name}" if name else "")


def assemble(data: Collected, server_name: str) -> dict[str, Any]:
    kinds = {room["room_id"]: room["kind"] for room in data.rooms}
    messages: dict[str, list[dict[str, Any]]] = {kind: [] for kind in ROOM_KINDS}
    links: list[dict[str, Any]] = []
    for event in sorted(data.events, key=lambda e: (e.get("origin_server_ts") or 0, e.get("event_id") or "")):
        messages[kinds.get(event.get("room_id", ""), "group")].append(event)
        for url in event_urls(event):
            links.append({"url": url, "event_id": event.get("event_id"), "room_id": event.get("room_id"),
                          "ts": event.get("origin_server_ts")})
    media = []
    for entry in data.media:
        item = {k: v for k, v in entry.items() if k != "bytes"}
        item["mxc"] = f"mxc://{server_name}/{entry['media_id']}"
        item["file"] = media_filename(entry) if entry.get("bytes") is not None else None
        media.append(item)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "user_id": data.user_id,
        "server_name": server_name,
        "request_id": data.request_id,
        "generated_ts": data.generated_ts,
        "profile": data.profile,
        "threepids": data.threepids,
        "devices": data.devices,
        "connections": data.connections,
        "logins": data.logins,
        "account_data": data.account_data,
        "push_rules": data.push_rules,
        "pushers": data.pushers,
        "presence": data.presence,
        "rooms": data.rooms,
        "messages": messages,
        "message_counts": {kind: len(events) for kind, events in messages.items()},
        "media": media,
        "links": links,
        "consent": data.consent,
        "reports": data.reports,
        "privacy_requests": data.privacy_requests,
        "payment_details": PAYMENT_STATEMENT,
        "unreachable": data.unreachable,
    }


def _when(ts: Any) -> str:
    if not isinstance(ts, int | float):
        return ""
    return datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_when(r.get(c)) if c.endswith('_ts') or c == 'ts' else str(r.get(c, '')))}"
                         "</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>" if rows else "<p>—</p>"


def render_html(export: dict[str, Any]) -> str:
    """A readable summary of export.json, in Dutch and English headings."""
    e = html.escape
    profile = export["profile"]
    parts = [
        "<!doctype html><html lang=nl><meta charset=utf-8>",
        f"<title>Gegevensexport / data export {e(export['user_id'])}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}</style>",
        f"<h1>Gegevensexport / data export: {e(export['user_id'])}</h1>",
        f"<p>{e(_when(export['generated_ts']))} — verzoek / request {e(export['request_id'])}. "
        "Alle gegevens staan volledig in <code>export.json</code>; the full data is in "
        "<code>export.json</code>.</p>",
        "<h2>Profiel / profile</h2>",
        _table([{"key": k, "value": v} for k, v in sorted(profile.items()) if not isinstance(v, list | dict)],
               ["key", "value"]),
        "<h2>E-mail en telefoon / 3PIDs</h2>", _table(export["threepids"], ["medium", "address", "added_at"]),
        "<h2>Apparaten / devices</h2>",
        _table(export["devices"], ["device_id", "display_name", "last_seen_ip", "last_seen_user_agent",
                                   "last_seen_ts"]),
        "<h2>IP-adressen / connections</h2>",
        _table(export["connections"], ["device_id", "ip", "user_agent", "last_seen_ts"]),
        "<h2>Aanmeldingen / logins</h2>", _table(export["logins"], ["device_id", "ip", "user_agent", "ts"]),
        "<h2>Ruimtes / rooms</h2>",
        _table(export["rooms"], ["room_id", "name", "kind", "membership", "servers"]),
        "<h2>Berichten / messages</h2>",
        _table([{"kind": k, "count": v} for k, v in export["message_counts"].items()], ["kind", "count"]),
    ]
    for kind in ROOM_KINDS:
        rows = [{"origin_server_ts": ev.get("origin_server_ts"), "room_id": ev.get("room_id"),
                 "type": ev.get("type"), "body": (ev.get("content") or {}).get("body", "")}
                for ev in export["messages"][kind]]
        parts += [f"<h3>{e(kind)}</h3>", _table(rows, ["origin_server_ts", "room_id", "type", "body"])]
    parts += [
        "<h2>Media</h2>",
        _table(export["media"], ["media_id", "media_type", "media_length", "upload_name", "created_ts", "file"]),
        "<h2>Gedeelde links / links</h2>", _table(export["links"], ["url", "room_id", "ts"]),
        "<h2>Toestemming / consent</h2>", _table(export["consent"].get("records", []), ["version", "ts"]),
        "<h2>Meldingen / reports</h2>",
        _table(export["reports"].get("event_reports", []), ["id", "room_id", "event_id", "reason", "received_ts"]),
        "<h2>Privacyverzoeken / privacy requests</h2>",
        _table(export["privacy_requests"], ["request_id", "kind", "status", "created_ts", "completed_ts"]),
        "<h2>Betaalgegevens / payment details</h2>",
        f"<p>{e(PAYMENT_STATEMENT['statement']['nl'])}<br>{e(PAYMENT_STATEMENT['statement']['en'])}</p>",
    ]
    if export["unreachable"]:
        parts += ["<h2>Niet beschikbaar / not available</h2>",
                  _table([{"class": k, "why": v} for k, v in export["unreachable"].items()], ["class", "why"])]
    parts.append("</html>")
    return "\n".join(parts)


def build_zip(data: Collected, server_name: str) -> bytes:
    export = assemble(data, server_name)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        archive.writestr("export.json", orjson.dumps(export, option=orjson.OPT_INDENT_2))
        archive.writestr("index.html", render_html(export))
        for entry in data.media:
            if entry.get("bytes") is not None:
                archive.writestr(media_filename(entry), entry["bytes"], compress_type=zipfile.ZIP_STORED)
    return out.getvalue()
