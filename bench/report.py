"""The ours-vs-Synapse ratio table that every benchmark prints."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# (label, path into a server's results, goal text)
Figure = tuple[str, tuple[str, ...], str]


def dig(result: Any, *path: str) -> float | None:
    """The number at `path` in nested result dicts, or None when any step is missing."""
    for key in path:
        if not isinstance(result, dict) or key not in result:
            return None
        result = result[key]
    return result if isinstance(result, int | float) else None


def render(results: dict[str, dict[str, Any]], figures: Sequence[Figure]) -> tuple[str, list[dict[str, Any]]]:
    """A text table of each figure for ours and Synapse with their ratio, and the rows as dicts."""
    ours, synapse = results.get("ours", {}), results.get("synapse", {})
    rows = []
    for label, path, goal in figures:
        a, b = dig(ours, *path), dig(synapse, *path)
        ratio = a / b if a is not None and b else None
        rows.append({"figure": label, "ours": a, "synapse": b, "ours/syn": ratio, "goal": goal})

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2f}"

    lines = [f"{'figure':42} {'ours':>10} {'synapse':>10} {'ours/syn':>9}  goal"]
    lines += [f"{r['figure']:42} {fmt(r['ours']):>10} {fmt(r['synapse']):>10} {fmt(r['ours/syn']):>9}  {r['goal']}"
              for r in rows]
    return "\n".join(lines), rows


RESULTS_DIR = Path(__file__).resolve().parent / "results"


def save_results(name: str, payload: dict[str, Any], out: Path | None = None) -> Path:
    """Write a run's JSON under bench/results/ (per machine, never committed) and say where."""
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / ".gitignore").write_text("*\n")
    out = out or RESULTS_DIR / f"{name}-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(payload, indent=2))
    print(f"\nresults: {out}")
    return out
