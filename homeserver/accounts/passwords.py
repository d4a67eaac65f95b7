"""Password hashing with bcrypt (adaptive cost), run off the event loop."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets

import bcrypt


# bcrypt only reads 72 bytes; pre-hashing keeps long passphrases fully significant.
def _prepare(password: str, pepper: str) -> bytes:
    digest = hashlib.sha256((password + pepper).encode("utf-8")).digest()
    return base64.b64encode(digest)


class PasswordHasher:
    def __init__(self, rounds: int = 12, pepper: str = ""):
        self.rounds = rounds
        self.pepper = pepper
        self._dummy_hash: str | None = None

    async def hash(self, password: str) -> str:
        prepared = _prepare(password, self.pepper)
        hashed = await asyncio.to_thread(bcrypt.hashpw, prepared, bcrypt.gensalt(self.rounds))
        return hashed.decode("ascii")

    async def check(self, password: str, stored_hash: str | None) -> bool:
        """Whether `password` matches; with no stored hash it still spends the time of a check."""
        if not stored_hash:
            if self._dummy_hash is None:
                self._dummy_hash = await self.hash(secrets.token_hex(16))
            await asyncio.to_thread(bcrypt.checkpw, b"x", self._dummy_hash.encode("ascii"))
            return False
        prepared = _prepare(password, self.pepper)
        try:
            return await asyncio.to_thread(bcrypt.checkpw, prepared, stored_hash.encode("ascii"))
        except ValueError:
            return False
