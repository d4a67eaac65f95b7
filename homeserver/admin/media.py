"""Managing media as a server admin: quarantine, protection, deletion and listings."""

from __future__ import annotations

from typing import Any

from homeserver.admin.common import existing_local_user, page
from homeserver.errors import invalid_param, not_found
from homeserver.media.service import MediaService
from homeserver.requester import Requester
from storage.stores.accounts import AccountStore
from storage.stores.admin import AdminStore
from storage.stores.events import EventStore
from storage.stores.media import AdminMedia, MediaStore


def _media_json(media: AdminMedia) -> dict[str, Any]:
    """One item of the admin API's media views (Synapse's field names: `media_type` is the content type)."""
    return {
        "media_id": media.media_id, "media_type": media.content_type, "media_length": media.media_length,
        "upload_name": media.upload_name, "created_ts": media.created_ts, "last_access_ts": media.last_access_ts,
        "quarantined_by": media.quarantined_by, "safe_from_quarantine": media.safe_from_quarantine,
    }


def _split_mxc(uri: str) -> tuple[str, str] | None:
    server, _, media_id = uri.removeprefix("mxc://").partition("/")
    return (server, media_id) if server and media_id and "/" not in media_id else None


class AdminMediaService:
    def __init__(self, server_name: str, media: MediaService, media_store: MediaStore, admin_store: AdminStore,
                 accounts: AccountStore, events: EventStore):
        self._server_name = server_name
        self._media = media
        self._store = media_store
        self._admin = admin_store
        self._accounts = accounts
        self._events = events

    # --- one media item ----------------------------------------------------------------------
    async def quarantine(self, requester: Requester, server_name: str, media_id: str, quarantine: bool) -> None:
        """Quarantine (or release) one item; protected local media stays unquarantined."""
        if server_name == self._server_name:
            row = await self._store.get_local_media_admin(media_id)
            if row is None:
                raise not_found("Unknown media")
            if quarantine and row.safe_from_quarantine:
                return
        if not await self._media.quarantine_media(server_name, media_id, requester.user_id if quarantine else None):
            raise not_found("Unknown media")

    async def protect(self, media_id: str, protect: bool) -> None:
        if not await self._store.set_protected(media_id, protect):
            raise not_found("Unknown media")

    async def info(self, server_name: str, media_id: str) -> dict[str, Any]:
        if server_name != self._server_name:
            raise invalid_param("server_name: only local media can be inspected")
        row = await self._store.get_local_media_admin(media_id)
        if row is None:
            raise not_found("Unknown media")
        return {"media_info": _media_json(row)}

    async def delete(self, server_name: str, media_id: str) -> dict[str, Any]:
        """`DELETE /v1/media/{serverName}/{mediaId}`: a local item and its bytes."""
        if server_name != self._server_name:
            raise invalid_param("server_name: can only delete local media")
        if not await self._media.delete_local_media(media_id):
            raise not_found("Unknown media")
        return {"deleted_media": [media_id], "total": 1}

    # --- many ----------------------------------------------------------------------------
    async def delete_old(self, server_name: str | None, before_ts: int, size_gt: int,
                         keep_profiles: bool) -> dict[str, Any]:
        """`POST /v1/media/delete`: local media last used before a time and above a size."""
        if server_name is not None and server_name != self._server_name:
            raise invalid_param("server_name: can only delete local media")
        keep: set[str] = set()
        if keep_profiles:
            for uri in await self._admin.avatar_media_uris():
                parts = _split_mxc(uri)
                if parts and parts[0] == self._server_name:
                    keep.add(parts[1])
        deleted = []
        for media_id in await self._store.local_media_ids_before(before_ts, size_gt, keep):
            if await self._media.delete_local_media(media_id):
                deleted.append(media_id)
        return {"deleted_media": deleted, "total": len(deleted)}

    async def delete_unreferenced(self, uris: set[str]) -> list[str]:
        """Delete the local media among `uris` that no stored event and no avatar names, unless protected."""
        in_use = await self._admin.avatar_media_uris()
        deleted = []
        for uri in sorted(uris - in_use):
            parts = _split_mxc(uri)
            if parts is None or parts[0] != self._server_name:
                continue
            row = await self._store.get_local_media_admin(parts[1])
            if row is None or row.safe_from_quarantine or await self._admin.media_uri_in_events(uri):
                continue
            if await self._media.delete_local_media(parts[1]):
                deleted.append(parts[1])
        return deleted

    async def purge_remote_cache(self, before_ts: int) -> dict[str, Any]:
        return {"deleted": await self._media.purge_remote_media_cache(before_ts)}

    async def room_media(self, room_id: str) -> dict[str, Any]:
        """`GET /v1/room/{roomId}/media`: the mxc URIs the room's events use, local and remote."""
        if await self._events.get_room_version_id(room_id) is None:
            raise not_found("Room not found")
        local, remote = [], []
        for uri in sorted(await self._admin.room_media_uris(room_id)):
            parts = _split_mxc(uri)
            if parts is not None:
                (local if parts[0] == self._server_name else remote).append(uri)
        return {"local": local, "remote": remote}

    async def quarantine_room(self, requester: Requester, room_id: str) -> dict[str, Any]:
        media = await self.room_media(room_id)
        count = 0
        local_ids = [p[1] for p in (_split_mxc(u) for u in media["local"]) if p]
        if local_ids:
            count += await self._store.quarantine_local_ids(local_ids, requester.user_id)
        for uri in media["remote"]:
            parts = _split_mxc(uri)
            if parts and await self._media.quarantine_media(parts[0], parts[1], requester.user_id):
                count += 1
        return {"num_quarantined": count}

    async def quarantine_user(self, requester: Requester, user_id: str) -> dict[str, Any]:
        await existing_local_user(self._accounts, self._server_name, user_id)
        return {"num_quarantined": await self._store.quarantine_user_media(user_id, requester.user_id)}

    async def user_media_statistics(self, *, order_by: str, backwards: bool, offset: int, limit: int,
                                    from_ts: int | None, until_ts: int | None,
                                    search_term: str | None) -> dict[str, Any]:
        """`GET /v1/statistics/users/media`: media count and size per local user."""
        if from_ts is not None and until_ts is not None and until_ts < from_ts:
            raise invalid_param("Query parameter until_ts must be greater than from_ts.")
        if search_term is not None and not search_term:
            raise invalid_param("Query parameter search_term cannot be empty.")
        users, total = await self._admin.user_media_statistics(
            order_by=order_by, backwards=backwards, offset=offset, limit=limit, from_ts=from_ts, until_ts=until_ts,
            search_term=search_term)
        body: dict[str, Any] = {"users": [{"user_id": u.user_id, "displayname": u.displayname,
                                           "media_count": u.media_count, "media_length": u.media_length}
                                          for u in users], "total": total}
        if offset + len(users) < total:
            body["next_token"] = offset + len(users)
        return body

    async def list_user_media(self, user_id: str, *, order_by: str, backwards: bool, offset: int,
                              limit: int) -> dict[str, Any]:
        await existing_local_user(self._accounts, self._server_name, user_id)
        media, total = await self._store.list_user_media_admin(user_id, order_by=order_by, backwards=backwards,
                                                               offset=offset, limit=limit)
        body = page([_media_json(m) for m in media], total, offset, limit, "media")
        if "next_token" in body:
            body["next_token"] = int(body["next_token"])
        return body

    async def delete_user_media(self, user_id: str, *, order_by: str, backwards: bool, offset: int,
                                limit: int) -> dict[str, Any]:
        """`DELETE /v1/users/{userId}/media`: the page of the user's media that the list would show."""
        listed = await self.list_user_media(user_id, order_by=order_by, backwards=backwards, offset=offset,
                                            limit=limit)
        deleted = []
        for item in listed["media"]:
            if await self._media.delete_local_media(item["media_id"]):
                deleted.append(item["media_id"])
        return {"deleted_media": deleted, "total": len(deleted)}
