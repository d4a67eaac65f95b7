"""The identity servers a user's third-party identifiers were bound through."""

from __future__ import annotations

from storage.database import Database


class IdentityBindingStore:
    def __init__(self, db: Database):
        self.db = db

    async def add_binding(self, user_id: str, medium: str, address: str, id_server: str) -> None:
        await self.db.simple_upsert("user_threepid_id_server", {"user_id": user_id, "medium": medium,
                                                                "address": address, "id_server": id_server}, {})

    async def get_binding_servers(self, user_id: str, medium: str, address: str) -> list[str]:
        rows = await self.db.simple_select_list("user_threepid_id_server",
                                                {"user_id": user_id, "medium": medium, "address": address},
                                                ["id_server"], order_by=["id_server"])
        return [row["id_server"] for row in rows]

    async def remove_binding(self, user_id: str, medium: str, address: str, id_server: str) -> None:
        await self.db.simple_delete("user_threepid_id_server", {"user_id": user_id, "medium": medium,
                                                                "address": address, "id_server": id_server})
