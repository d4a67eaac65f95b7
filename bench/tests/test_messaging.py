"""The messaging benchmark's pure parts: the seeded plan, schedules, statistics, the report, and
peak-RSS accounting of a real process tree.

    .venv/bin/python -m pytest bench/tests -q
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import messaging  # noqa: E402
import servers  # noqa: E402

from synctest.users import shared_secret_mac as synctest_mac  # noqa: E402

FULL = messaging.Workload()


@pytest.mark.parametrize("w", [FULL, messaging.QUICK, dataclasses.replace(FULL, seed=7)])
def test_room_plan_puts_everyone_in_room_zero_and_user_zero_in_every_room(w):
    plans = messaging.plan_rooms(w)
    assert len(plans) == w.rooms
    assert plans[0].members == tuple(range(w.users))
    for plan in plans:
        assert 0 in plan.members
        assert plan.creator in plan.members
        assert len(set(plan.members)) == len(plan.members)
        assert min(w.min_members, w.users) <= len(plan.members) <= w.max_members


def test_room_plan_is_the_same_for_the_same_seed_and_differs_for_another():
    assert messaging.plan_rooms(FULL) == messaging.plan_rooms(dataclasses.replace(FULL))
    assert messaging.plan_rooms(FULL) != messaging.plan_rooms(dataclasses.replace(FULL, seed=2))


def test_every_user_has_a_room_to_send_into():
    rooms = messaging.rooms_of_users(messaging.plan_rooms(FULL), FULL.users)
    assert all(rooms)
    assert rooms[0] == list(range(FULL.rooms))


@pytest.mark.parametrize("total", [0, 1, 19, 20, 2000, 2013])
def test_send_schedule_sends_exactly_the_total_evenly_and_only_into_the_senders_rooms(total):
    rooms = messaging.rooms_of_users(messaging.plan_rooms(FULL), FULL.users)
    senders = list(range(20))
    schedule = messaging.send_schedule(senders, rooms, total)
    counts = [len(s) for s in schedule]
    assert sum(counts) == total
    assert max(counts) - min(counts) <= 1
    for sender, sent in zip(senders, schedule, strict=True):
        assert set(sent) <= set(rooms[sender])


def test_send_schedule_spreads_senders_over_different_first_rooms():
    rooms = messaging.rooms_of_users(messaging.plan_rooms(FULL), FULL.users)
    schedule = messaging.send_schedule([0], rooms, FULL.rooms)
    assert sorted(schedule[0]) == list(range(FULL.rooms))


def test_fill_schedule_tops_up_the_busy_room_first_then_spreads_the_rest():
    rooms = messaging.rooms_of_users(messaging.plan_rooms(FULL), FULL.users)
    senders = list(range(20))
    schedule = messaging.fill_schedule(senders, rooms, 3000, 0, 700)
    assert sum(len(s) for s in schedule) == 3000
    assert sum(s.count(0) for s in schedule) >= 700
    assert all(s[:35] == [0] * 35 for s in schedule)


def test_fill_schedule_ignores_a_busy_room_that_is_already_full_and_never_exceeds_the_total():
    rooms = messaging.rooms_of_users(messaging.plan_rooms(FULL), FULL.users)
    senders = list(range(20))
    plain = messaging.send_schedule(senders, rooms, 100)
    assert messaging.fill_schedule(senders, rooms, 100, 0, -50) == plain
    assert sum(len(s) for s in messaging.fill_schedule(senders, rooms, 100, 0, 500)) == 100
    assert messaging.fill_schedule(senders, rooms, -5, 0, 500) == [[] for _ in senders]


def test_percentile_interpolates_between_ranks_like_numpy():
    assert messaging.percentile([4, 1, 3, 2], 0.5) == 2.5
    assert messaging.percentile([1, 2, 3, 4, 5], 0.0) == 1
    assert messaging.percentile([1, 2, 3, 4, 5], 1.0) == 5
    assert messaging.percentile(list(range(101)), 0.99) == pytest.approx(99)
    assert messaging.percentile([7.0], 0.95) == 7.0
    with pytest.raises(ValueError):
        messaging.percentile([], 0.5)


def test_shared_secret_mac_matches_the_synctest_implementation():
    ours = messaging.shared_secret_mac("s3cret", "n0nce", "bench001", "pw")
    assert ours == synctest_mac("s3cret", "n0nce", "bench001", "pw", admin=False)
    assert ours != messaging.shared_secret_mac("other", "n0nce", "bench001", "pw")


def test_dig_reads_a_nested_number_and_gives_none_for_missing_or_failed_phases():
    result = {"phases": {"throughput": {"per_second": 120}, "latency": {"error": "404"}}}
    assert messaging.dig(result, ("phases", "throughput", "per_second")) == 120.0
    assert messaging.dig(result, ("phases", "latency", "p50_ms")) is None
    assert messaging.dig({}, ("peak_rss_mib",)) is None


FIGURES = {f.key: f for f in messaging.figures_for(FULL)}


@pytest.mark.parametrize(
    "key, ours, synapse, ratio, met",
    [
        ("throughput", 300.0, 100.0, 3.0, True),
        ("throughput", 150.0, 100.0, 1.5, False),
        ("latency_p50", 20.0, 100.0, 0.2, True),
        ("initial_sync", 80.0, 100.0, 0.8, False),
        ("latency_p95", 80.0, 100.0, 0.8, None),
        ("messages", None, 100.0, None, None),
        ("messages", 10.0, None, None, None),
    ],
)
def test_compare_gives_ours_over_synapse_and_judges_the_goal_by_which_way_is_better(
    key, ours, synapse, ratio, met
):
    row = messaging.compare(FIGURES[key], ours, synapse)
    assert row["ratio"] == (pytest.approx(ratio) if ratio is not None else None)
    assert row["goal_met"] is met


def test_a_whole_run_figure_is_not_compared_when_a_run_stopped_short():
    row = messaging.compare(FIGURES["peak_rss"], 50.0, 140.0, comparable=False)
    assert row["ratio"] is None and row["goal_met"] is None


def test_a_run_counts_as_complete_only_without_errors_or_skipped_phases():
    assert messaging.completed({"phases": {"register": {"seconds": 1}}})
    assert not messaging.completed({"phases": {"register": {"seconds": 1}, "rooms": {"error": "404"}}})
    assert not messaging.completed({"phases": {"messages": {"skipped": "needs history"}}})
    assert not messaging.completed({"error": "start failed", "phases": {}})


def test_table_shows_na_ratios_and_missed_goals():
    rows = [messaging.compare(FIGURES["throughput"], 50.0, 100.0),
            messaging.compare(FIGURES["messages"], None, 30.0)]
    table = messaging.render_table(rows)
    assert "0.50x" in table and "MISSED" in table
    # A figure without a measurement of ours shows n/a and an undecided goal.
    assert table.splitlines()[-1].split()[-7:] == ["n/a", "30.00", "n/a", "lower", "<=", "0.2x", "?"]


def test_quick_flag_picks_the_small_workload_and_explicit_flags_override_it():
    w = messaging.workload_from(messaging.parse_args(["--quick", "--messages", "42"]))
    assert w == dataclasses.replace(messaging.QUICK, messages=42)
    assert messaging.workload_from(messaging.parse_args([])) == FULL


def test_peak_rss_includes_a_child_process_memory():
    child = subprocess.Popen([sys.executable, "-c",
                              "import time; x = bytearray(80_000_000); time.sleep(30)"])
    try:
        meter = servers.PeakRss(os.getpid())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            meter.sample()
            if meter.marks_kib.get(child.pid, 0) > 70_000:
                break
            time.sleep(0.05)
        assert child.pid in meter.marks_kib
        assert meter.marks_kib[child.pid] > 70_000
        assert meter.peak_mib > 70
    finally:
        child.kill()
        child.wait()


def test_peak_rss_keeps_the_mark_of_a_child_that_has_exited():
    meter = servers.PeakRss(os.getpid())
    meter.marks_kib[999_999_999] = 1024
    meter.sample()
    assert meter.marks_kib[999_999_999] == 1024
    assert meter.peak_mib is not None and meter.peak_mib >= 1


def test_postgres_dsn_swaps_only_the_database_name():
    assert servers.postgres_dsn("bench_x").endswith("/bench_x")
    assert servers.postgres_dsn("bench_x").rsplit("/", 1)[0] == servers.POSTGRES_ADMIN_DSN.rsplit("/", 1)[0]


SYNAPSE_AVAILABLE = servers.run_synapse.find_synapse_python() is not None


@pytest.mark.parametrize(
    "kind",
    ["ours", pytest.param("synapse", marks=pytest.mark.skipif(not SYNAPSE_AVAILABLE, reason="no Python with Synapse installed"))],
)
async def test_a_started_server_registers_users_with_the_shared_secret_and_leaves_nothing_behind(kind):
    import aiohttp

    w = dataclasses.replace(messaging.QUICK, users=3)
    with servers.start_server(kind, "sqlite") as server:
        workdir = server.workdir
        assert server.url.startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession() as session:
            run = messaging.Run(messaging.Api(session, server.url), server.shared_secret, w)
            result = await run.register()
        assert result["users"] == 3
        assert [u.localpart for u in run.users] == ["bench000", "bench001", "bench002"]
        assert all(u.user_id.startswith("@bench00") and u.token for u in run.users)
        meter = servers.PeakRss(server.pid)
        meter.sample()
        assert meter.peak_mib > 10
    assert not server.alive()
    assert not workdir.exists()
