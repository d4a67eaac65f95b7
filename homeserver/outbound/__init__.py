"""Durable outbound delivery: per-destination queues in the database, sent with backoff."""
