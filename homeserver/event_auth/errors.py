"""The one exception the authorization rules raise."""

from __future__ import annotations


class AuthError(Exception):
    """An event is not allowed by the authorization rules of its room version.

    `reason` is a readable sentence naming the rule that failed; `errcode` lets the
    HTTP layer render it as a Matrix error without knowing about auth.
    """

    def __init__(self, reason: str, errcode: str = "M_FORBIDDEN"):
        super().__init__(reason)
        self.reason = reason
        self.errcode = errcode
