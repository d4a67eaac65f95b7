"""Who is making a request: the one type every service that acts for a user takes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Requester:
    """Who is making a request."""

    user_id: str
    device_id: str | None
    access_token_id: int | None
    is_guest: bool = False
    # Set when an application service makes the request with its as_token (acting as `user_id`).
    app_service_id: str | None = None
