"""Positions of the stream stages: how far each background consumer of a stream has got."""

from __future__ import annotations

from storage.database import Database, Transaction


async def save_stage_position_txn(txn: Transaction, stage: str, position: int) -> None:
    """Record a stage's position inside the transaction that commits the stage's work."""
    await txn.execute(
        "INSERT INTO stream_stage_positions (stage_name, position) VALUES (?, ?)"
        " ON CONFLICT (stage_name) DO UPDATE SET position = excluded.position",
        (stage, position),
    )


class StagePositionStore:
    def __init__(self, db: Database):
        self.db = db

    async def get(self, stage: str) -> int | None:
        return await self.db.fetch_value("get_stage_position",
                                         "SELECT position FROM stream_stage_positions WHERE stage_name = ?", (stage,))

    async def save(self, stage: str, position: int) -> None:
        """A position saved alone covers events that gave the stage nothing to write: losing it in
        a crash of the machine only makes the stage look at them again."""
        await self.db.run_interaction("save_stage_position", save_stage_position_txn, stage, position, durable=False)
