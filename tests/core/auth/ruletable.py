"""The machinery of the auth rule tables: one row per rule or version difference.

A row builds a small room and one event for a given room version, and says in which
versions the event is allowed and in which it is rejected. For rejections, `because`
must appear in the AuthError reason, so a rejection by the wrong rule fails the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from homeserver.event_auth import AuthError, check_auth
from homeserver.events.event import Event
from tests.event_auth.authroom import AuthRoom

Builder = Callable[[str], tuple[AuthRoom, Event]]


@dataclass(frozen=True)
class Rule:
    description: str
    build: Builder
    allow: tuple[str, ...]
    reject: tuple[str, ...]
    because: str


class RuleTable:
    def __init__(self) -> None:
        self.rows: list[Rule] = []

    def rule(
        self, description: str, *, allow: Sequence[str] = (), reject: Sequence[str] = (), because: str = ""
    ) -> Callable[[Builder], Builder]:
        """Register the decorated builder as a row."""

        def register(build: Builder) -> Builder:
            self.rows.append(Rule(description, build, tuple(allow), tuple(reject), because))
            return build

        return register

    def params(self) -> list[Any]:
        """One pytest.param per (row, version), with an ID that reads as a sentence."""
        return list(self._params())

    def _params(self) -> Iterator[Any]:
        for r in self.rows:
            for version in r.allow:
                yield pytest.param(r, version, True, id=f"v{version} allows: {r.description}")
            for version in r.reject:
                yield pytest.param(r, version, False, id=f"v{version} rejects: {r.description}")


def check_row(r: Rule, version: str, expected: bool) -> None:
    """Assert the row's expectation for one room version."""
    room, event = r.build(version)
    if expected:
        check_auth(event, room.state, room.rv)
    else:
        with pytest.raises(AuthError) as excinfo:
            check_auth(event, room.state, room.rv)
        assert r.because.lower() in excinfo.value.reason.lower()
