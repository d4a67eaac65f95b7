"""Ephemeral room data: typing notifications and read receipts (presence later)."""
