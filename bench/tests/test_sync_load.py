"""bench/sync_load.py: its quick mode runs end to end against our server, and the report's parts.

    .venv/bin/python -m pytest bench/tests -q
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import sync_load  # noqa: E402


def test_the_full_workload_is_1000_long_polls_of_50_users_with_20_senders_for_60_seconds():
    w = sync_load.Workload()
    assert (w.users, w.devices, w.senders, w.duration) == (50, 20, 20, 60.0)


def test_the_room_plan_puts_every_user_in_room_zero():
    plans = sync_load.room_plan(sync_load.QUICK)
    assert plans[0].members == tuple(range(sync_load.QUICK.users))


def test_the_absolute_goals_are_judged_on_our_figures_only():
    results = {"ours": {"phases": {"load": {"delivered_pct": 100.0, "missed": 0, "limited_timelines": 0,
                                            "ack_p99_ms": 400.0, "delivery_max_ms": 31_000.0}}}}
    assert sync_load.absolute_verdicts(results) == [
        "send ack p99 < 1000 ms: met", "delivery max <= 30000 ms: MISSED",
        "100% delivered, no limited timeline: met"]


def test_the_quick_mode_runs_against_our_server_and_every_device_sees_every_message(tmp_path, capsys):
    out = tmp_path / "result.json"
    payload = sync_load.main_payload(["--quick", "--servers", "ours", "--out", str(out)])
    load = payload["servers"]["ours"]["phases"]["load"]
    assert load["messages"] > 0
    assert load["expected_deliveries"] == load["deliveries"] > 0
    assert load["delivered_pct"] == 100.0
    assert load["duplicates"] == 0
    assert load["sync_errors"] == 0 and load["send_errors"] == 0
    assert payload["servers"]["ours"]["peak_rss_mib"] > 0
    assert out.exists()
    assert "delivery latency p99" in capsys.readouterr().out
