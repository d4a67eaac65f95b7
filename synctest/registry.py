"""Registering conformance cases and running them with one PASS/FAIL line each."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

CaseFunction = Callable[[Any], Awaitable[None]]

# A hung server must not hang the suite; one case that long is a failure in itself.
CASE_TIMEOUT_SECONDS = 60.0

_REGISTRY: dict[str, Case] = {}


class CaseFailure(AssertionError):
    """The server's answer contradicts the spec; the message says how."""


@dataclass(frozen=True)
class Case:
    name: str
    run: CaseFunction


def case(function: CaseFunction | None = None, *, name: str | None = None) -> Any:
    """Register a case as ``<module area>.<function name>``, or ``<area>.<name>`` if given.

    Usable bare (``@case``) or, for table-driven cases made in a loop, as ``case(name=...)(fn)``.
    """

    def register(function: CaseFunction) -> CaseFunction:
        area = function.__module__.rsplit(".", 1)[-1]
        full_name = f"{area}.{name or function.__name__}"
        if full_name in _REGISTRY:
            raise ValueError(f"duplicate synctest case {full_name}")
        _REGISTRY[full_name] = Case(full_name, function)
        return function

    return register(function) if function is not None else register


def all_cases() -> list[Case]:
    from synctest import cases  # noqa: F401  -- importing registers every case module

    return list(_REGISTRY.values())


def select(cases: Iterable[Case], substring: str | None) -> list[Case]:
    return [c for c in cases if not substring or substring in c.name]


def _describe(error: BaseException) -> str:
    if isinstance(error, AssertionError) and str(error):
        return str(error)
    if isinstance(error, asyncio.TimeoutError):
        return f"timed out after {CASE_TIMEOUT_SECONDS:.0f}s"
    return f"{type(error).__name__}: {error}"


async def run_cases(cases: list[Case], ctx: Any, emit: Callable[[str], None]) -> int:
    """Run ``cases`` one after another against ``ctx``; return how many failed."""
    passed = failed = 0
    for item in cases:
        try:
            await asyncio.wait_for(item.run(ctx), CASE_TIMEOUT_SECONDS)
        except Exception as error:  # noqa: BLE001 -- any crash is that case's failure, not the suite's
            failed += 1
            # Bodies quoted in messages may span lines; one line per case keeps the output parseable.
            emit(f"FAIL {item.name}: {' '.join(_describe(error).split())}")
        else:
            passed += 1
            emit(f"PASS {item.name}")
    emit(f"{passed} passed, {failed} failed")
    return failed
