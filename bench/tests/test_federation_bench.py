"""bench/federation_bench.py: its quick mode runs end to end (a small room on a resident Synapse,
joined by our server and by a second Synapse; the test uses 40 members), and its pure parts.

    .venv/bin/python -m pytest bench/tests/test_federation_bench.py -q
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import federation_bench as federation  # noqa: E402

HAS_SYNAPSE = subprocess.run([sys.executable, "-c", "import synapse.app.homeserver"],
                             capture_output=True).returncode == 0


def test_the_full_room_has_2000_members_and_quick_100():
    assert federation.Workload().members == 2000
    assert federation.QUICK.members == 100


def test_flags_override_the_quick_workload():
    w = federation.workload_from(federation.parse_args(["--quick", "--members", "30", "--latency-interval", "0.5"]))
    assert (w.members, w.latency_interval, w.history) == (30, 0.5, federation.QUICK.history)
    assert federation.workload_from(federation.parse_args([])) == federation.Workload()


def test_percentile_interpolates_between_ranks():
    assert federation.percentile([4, 1, 3, 2], 0.5) == 2.5
    assert federation.percentile([7.0], 0.95) == 7.0
    assert federation.summary_ms([0.1, 0.3])["p50_ms"] == pytest.approx(200)


@pytest.mark.skipif(not HAS_SYNAPSE, reason="Synapse is not installed in this environment")
def test_the_quick_mode_joins_both_servers_and_times_messages_across_both_pairs(tmp_path, capsys):
    out = tmp_path / "result.json"
    # Smaller than --quick's 100 members, to keep this CI test well under a minute on a busy machine.
    payload = federation.main_payload(["--quick", "--members", "40", "--delivery-timeout", "5", "--out", str(out)])
    assert json.loads(out.read_text())["workload"]["members"] == 40
    results = payload["results"]
    for kind in ("ours", "synapse"):
        join = results[kind]["join"]
        assert 0 < join["join_ms"] < join["first_message_ms"], (kind, join)
        assert 0 < join["first_sync_ms"], (kind, join)
        for section in ("latency", "encrypted", "to_device"):
            to_joiner = results[kind][section]["to_joiner"]
            assert (to_joiner["count"], to_joiner["missed"]) == (federation.QUICK.latency_messages, 0), (
                kind, section, to_joiner)
    from_synapse = results["synapse"]["latency"]["from_joiner"]
    assert (from_synapse["count"], from_synapse["missed"]) == (federation.QUICK.latency_messages, 0), from_synapse
    table = capsys.readouterr().out
    assert "join to first message (ms)" in table
    assert {row["figure"] for row in payload["table"] if row["ours/syn"] is not None} >= {
        "join (ms)", "join to first usable /sync (ms)", "join to first message (ms)", "resident -> joiner p50 (ms)",
        "encrypted joiner -> resident p50 (ms)", "to-device joiner -> resident p50 (ms)"}
    for section in ("latency", "encrypted", "to_device"):
        from_ours = results["ours"][section]["from_joiner"]
        assert not from_ours["missed"], (section, from_ours)
        assert from_ours["count"] == federation.QUICK.latency_messages
