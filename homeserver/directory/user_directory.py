"""The user directory (/user_directory/search): finding users by ID or display name.

The database narrows the candidates to findable users containing every word; the ranking is
done here, where "how well does it match" is plain code: an exact name beats a whole-word
match, which beats a prefix match, and every word must start some part of the name or ID.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from homeserver.requester import Requester
from homeserver.errors import bad_json
from storage.stores.directory import DirectoryStore
from storage.stores.search import search_words

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
_PARTS = re.compile(r"\w+", re.UNICODE)


def match_score(words: Sequence[str], user_id: str, displayname: str | None) -> tuple[int, ...] | None:
    """A sort key (higher is better) for how well a user matches the words; None when they do not."""
    localpart = user_id[1:].split(":", 1)[0].lower()
    name = (displayname or "").lower()
    parts = set(_PARTS.findall(localpart)) | set(_PARTS.findall(name)) | {localpart}
    if not words or not all(any(p.startswith(w) for p in parts) for w in words):
        return None
    term = " ".join(words)
    exact = int(term in (localpart, " ".join(_PARTS.findall(name))))
    whole_words = sum(1 for w in words if w in parts)
    name_prefix = int(bool(name) and name.startswith(words[0]))
    return (exact, whole_words, name_prefix, int(bool(displayname)))


def rank_users(words: Sequence[str], candidates: Sequence[tuple[str, str | None, str | None]]
               ) -> list[tuple[str, str | None, str | None]]:
    """The candidates that match, best first (ties by user ID)."""
    scored = [(score, c) for c in candidates if (score := match_score(words, c[0], c[1])) is not None]
    scored.sort(key=lambda sc: (tuple(-s for s in sc[0]), sc[1][0]))
    return [c for _, c in scored]


def parse_search_body(body: Mapping[str, Any]) -> tuple[str, int]:
    term = body.get("search_term")
    if not isinstance(term, str):
        raise bad_json("search_term: required, a string")
    limit = body.get("limit", DEFAULT_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise bad_json("limit: must be a non-negative integer")
    return term, min(limit, MAX_LIMIT)


class UserDirectoryService:
    def __init__(self, store: DirectoryStore, search_all_users: bool):
        self._store = store
        self._search_all_users = search_all_users

    async def search(self, requester: Requester, body: Mapping[str, Any]) -> dict[str, Any]:
        """Users matching `search_term` that the requester may find, best first, with `limited`."""
        term, limit = parse_search_body(body)
        words = search_words(term)
        if not words:
            return {"results": [], "limited": False}
        candidates = await self._store.search_users(requester.user_id, words, all_users=self._search_all_users)
        ranked = rank_users(words, candidates)
        results = []
        for user_id, displayname, avatar_url in ranked[:limit]:
            entry: dict[str, Any] = {"user_id": user_id}
            if displayname:
                entry["display_name"] = displayname
            if avatar_url:
                entry["avatar_url"] = avatar_url
            results.append(entry)
        return {"results": results, "limited": len(ranked) > limit}
