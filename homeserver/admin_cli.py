"""`homeserver admin ...`: the common admin actions, over the admin API of a running server.

It speaks plain HTTP with an admin's access token (`--token` or `HOMESERVER_ADMIN_TOKEN`), so
it works against any server offering Synapse's admin API. Long operations show progress on
stderr; results go to stdout (tables, or JSON with `--json`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, TextIO

from homeserver.config import load_config
from homeserver.register_user import admin_base_url

POLL_INTERVAL_S = 0.5
PAGE = 100


class AdminApiError(SystemExit):
    pass


class AdminClient:
    def __init__(self, base_url: str, token: str):
        self._base = base_url.rstrip("/") + "/_synapse/admin"
        self._token = token

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, **params: Any) -> Any:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = self._base + path + (f"?{query}" if query else "")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"Bearer {self._token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")
            raise AdminApiError(f"{method} {path} failed ({e.code}): {detail}") from None
        except urllib.error.URLError as e:
            raise AdminApiError(f"Could not reach the homeserver at {url}: {e.reason}. Is it running?") from None


class Progress:
    """A one-line progress bar on a terminal (plain lines otherwise), for listings and jobs."""

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 30):
        self._label = label
        stream = stream or sys.stderr
        self._stream = stream
        self._width = width
        self._tty = stream.isatty()
        self._started = time.monotonic()

    def update(self, done: int, total: int | None = None, note: str = "") -> None:
        elapsed = time.monotonic() - self._started
        if total:
            filled = int(self._width * min(done, total) / total)
            bar = "#" * filled + "-" * (self._width - filled)
            line = f"{self._label} [{bar}] {done}/{total} {note} ({elapsed:.0f}s)"
        else:
            line = f"{self._label} {done} {note} ({elapsed:.0f}s)"
        if self._tty:
            self._stream.write("\r" + line.ljust(79))
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def finish(self, note: str) -> None:
        if self._tty:
            self._stream.write("\n")
        self._stream.write(f"{self._label}: {note}\n")
        self._stream.flush()


def _paginate(client: AdminClient, path: str, key: str, total_key: str, next_key: str, label: str,
              **params: Any) -> list[dict[str, Any]]:
    progress = Progress(label)
    items: list[dict[str, Any]] = []
    offset: Any = 0
    while True:
        page = client.call("GET", path, **{"from": offset, "limit": PAGE, **params})
        items += page[key]
        progress.update(len(items), page.get(total_key))
        offset = page.get(next_key)
        if offset is None or not page[key]:
            break
    progress.finish(f"{len(items)} fetched")
    return items


def _table(rows: list[dict[str, Any]], columns: list[str], out: TextIO) -> None:
    widths = {c: max([len(c), *(len(_cell(r.get(c))) for r in rows)]) for c in columns}
    out.write("  ".join(c.ljust(widths[c]) for c in columns).rstrip() + "\n")
    for row in rows:
        out.write("  ".join(_cell(row.get(c)).ljust(widths[c]) for c in columns).rstrip() + "\n")


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _wait(client: AdminClient, path: str, label: str, describe: Any = None) -> dict[str, Any]:
    """Poll a job's status until it completes or fails, showing how long it has run."""
    progress = Progress(label)
    polls = 0
    while True:
        status = client.call("GET", path)
        state = status["status"]
        note = describe(status) if describe else ""
        progress.update(polls, None, f"{state} {note}".strip())
        if state in ("complete", "failed"):
            progress.finish(state)
            return status
        polls += 1
        time.sleep(POLL_INTERVAL_S)


# --- commands ----------------------------------------------------------------------------------
def users_list(client: AdminClient, args: argparse.Namespace, out: TextIO) -> int:
    users = _paginate(client, "/v2/users", "users", "total", "next_token", "Listing users", name=args.name,
                      deactivated="true" if args.deactivated else None)
    if args.json:
        json.dump(users, out, indent=2)
        out.write("\n")
    else:
        _table(users, ["name", "displayname", "admin", "deactivated", "locked", "last_seen_ts"], out)
    return 0


def users_show(client: AdminClient, args: argparse.Namespace, out: TextIO) -> int:
    json.dump(client.call("GET", f"/v2/users/{_q(args.user_id)}"), out, indent=2)
    out.write("\n")
    return 0


def users_deactivate(client: AdminClient, args: argparse.Namespace, out: TextIO) -> int:
    client.call("POST", f"/v1/deactivate/{_q(args.user_id)}", {"erase": args.erase})
    out.write(f"Deactivated {args.user_id}{' and erased their data' if args.erase else ''}\n")
    return 0


def rooms_list(client: AdminClient, args: argparse.Namespace, out: TextIO) -> int:
    rooms = _paginate(client, "/v1/rooms", "rooms", "total_rooms", "next_batch", "Listing rooms",
                      search_term=args.search)
    if args.json:
        json.dump(rooms, out, indent=2)
        out.write("\n")
    else:
        _table(rooms, ["room_id", "name", "canonical_alias", "joined_members", "creator"], out)
    return 0


def rooms_purge(client: AdminClient, args: argparse.Namespace, out: TextIO) -> int:
    """Delete a room (everyone local leaves, every row goes), or only its history before a point."""
    if args.before_ts is not None or args.event_id is not None:
        path = f"/v1/purge_history/{_q(args.room_id)}" + (f"/{_q(args.event_id)}" if args.event_id else "")
        body: dict[str, Any] = {"delete_local_events": args.delete_local_events, "delete_media": args.delete_media}
        if args.before_ts is not None:
            body["purge_up_to_ts"] = args.before_ts
        purge_id = client.call("POST", path, body)["purge_id"]
        status = _wait(client, f"/v1/purge_history_status/{purge_id}", "Purging history")
    else:
        delete_id = client.call("DELETE", f"/v2/rooms/{_q(args.room_id)}",
                                {"block": args.block, "purge": True, "delete_media": args.delete_media})["delete_id"]

        def kicked(status: dict[str, Any]) -> str:
            result = status.get("shutdown_room") or {}
            return f"{len(result.get('kicked_users', []))} users removed" if result else ""

        status = _wait(client, f"/v2/rooms/delete_status/{delete_id}", "Deleting room", kicked)
    json.dump(status, out, indent=2)
    out.write("\n")
    return 0 if status["status"] == "complete" else 1


def media_quarantine(client: AdminClient, args: argparse.Namespace, out: TextIO) -> int:
    if args.room:
        result = client.call("POST", f"/v1/room/{_q(args.room)}/media/quarantine", {})
        out.write(f"Quarantined {result['num_quarantined']} media items of {args.room}\n")
    elif args.user:
        result = client.call("POST", f"/v1/user/{_q(args.user)}/media/quarantine", {})
        out.write(f"Quarantined {result['num_quarantined']} media items of {args.user}\n")
    else:
        progress = Progress("Quarantining")
        for index, uri in enumerate(args.mxc, 1):
            server, _, media_id = uri.removeprefix("mxc://").partition("/")
            if not server or not media_id:
                raise SystemExit(f"{uri} is not an mxc:// URI")
            client.call("POST", f"/v1/media/quarantine/{_q(server)}/{_q(media_id)}", {})
            progress.update(index, len(args.mxc))
        progress.finish(f"{len(args.mxc)} quarantined")
    return 0


def _q(text: str) -> str:
    return urllib.parse.quote(text, safe="")


# --- wiring ------------------------------------------------------------------------------------
def add_admin_parser(sub: Any) -> None:
    admin = sub.add_parser("admin", help="run admin actions against a running server's admin API")
    admin.add_argument("--config", "-c", help="homeserver.yaml, to find the admin listener")
    admin.add_argument("--url", help="base URL of the admin API (default: from --config)")
    admin.add_argument("--token", help="an admin's access token (default: $HOMESERVER_ADMIN_TOKEN)")
    admin.add_argument("--json", action="store_true", help="print JSON instead of tables")
    areas = admin.add_subparsers(dest="area", required=True)

    users = areas.add_parser("users").add_subparsers(dest="action", required=True)
    listing = users.add_parser("list", help="list users")
    listing.add_argument("--name", help="only users whose ID or display name contains this")
    listing.add_argument("--deactivated", action="store_true", help="include deactivated users")
    listing.set_defaults(admin_func=users_list)
    show = users.add_parser("show", help="show one user's details")
    show.add_argument("user_id")
    show.set_defaults(admin_func=users_show)
    deactivate = users.add_parser("deactivate", help="deactivate a user")
    deactivate.add_argument("user_id")
    deactivate.add_argument("--erase", action="store_true", help="also erase the user's data")
    deactivate.set_defaults(admin_func=users_deactivate)

    rooms = areas.add_parser("rooms").add_subparsers(dest="action", required=True)
    room_list = rooms.add_parser("list", help="list rooms")
    room_list.add_argument("--search", help="only rooms whose name, alias or ID matches")
    room_list.set_defaults(admin_func=rooms_list)
    purge = rooms.add_parser("purge", help="delete a room, or with --before-ts/--event-id only old history")
    purge.add_argument("room_id")
    purge.add_argument("--block", action="store_true", help="also stop anyone joining the room again")
    purge.add_argument("--before-ts", type=int, help="purge history sent before this time (ms)")
    purge.add_argument("--event-id", help="purge history before this event")
    purge.add_argument("--delete-local-events", action="store_true", help="also purge local users' events")
    purge.add_argument("--delete-media", action="store_true",
                       help="also delete local media that only the purged events used")
    purge.set_defaults(admin_func=rooms_purge)

    media = areas.add_parser("media").add_subparsers(dest="action", required=True)
    quarantine = media.add_parser("quarantine", help="quarantine media by URI, room or user")
    quarantine.add_argument("mxc", nargs="*", help="mxc:// URIs")
    group = quarantine.add_mutually_exclusive_group()
    group.add_argument("--room", help="every media item the room's events use")
    group.add_argument("--user", help="every media item the user uploaded")
    quarantine.set_defaults(admin_func=media_quarantine)
    admin.set_defaults(func=run_admin)


def run_admin(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    token = args.token or os.environ.get("HOMESERVER_ADMIN_TOKEN")
    if not token:
        raise SystemExit("An admin access token is needed: --token or HOMESERVER_ADMIN_TOKEN")
    if args.url:
        base_url = args.url
    elif args.config:
        base_url = admin_base_url(load_config(args.config))
    else:
        raise SystemExit("Where is the server? Give --url or --config")
    if args.area == "media" and args.action == "quarantine" and not (args.mxc or args.room or args.user):
        raise SystemExit("Name mxc:// URIs, --room or --user")
    return args.admin_func(AdminClient(base_url, token), args, out)
