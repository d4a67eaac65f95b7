"""Rooms: creating rooms, membership, sending events, relations, upgrades."""
