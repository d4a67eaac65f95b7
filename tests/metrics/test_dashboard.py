"""The Grafana dashboard in docs/ only names metrics the server exports, so it cannot drift."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from tests.metrics.scrape import metric_names, scrape
from tests.support.rooms import new_user

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"


def expressions(dashboard: dict[str, Any]) -> list[str]:
    found = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            found += [target["expr"] for target in inner.get("targets", [])]
    return found


def test_metric_names_are_read_from_promql_without_functions_or_labels():
    expr = ('topk(10, histogram_quantile(0.95, sum by (le, route) (rate(http_request_duration_seconds_bucket'
            '{job=~"$job", status=~"5.."}[$__rate_interval])))) / ignoring(kind) (a_total or vector(0))')
    assert metric_names(expr) == {"http_request_duration_seconds_bucket", "a_total"}


def test_the_dashboard_uses_a_prometheus_datasource_variable():
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


async def test_every_metric_the_dashboard_names_is_in_a_scrape(hs):
    dashboard = json.loads(DASHBOARD.read_text())
    async with aiohttp.ClientSession(hs.base_url("client")) as client:
        alice = await new_user(client, "alice")
        room_id = await alice.create_room()
        await alice.send(room_id, "hello")
        await alice.call("GET", "/sync", timeout="10")
    exported = await scrape(hs)
    named = set().union(*(metric_names(expr) for expr in expressions(dashboard)))
    assert len(named) > 30
    missing = sorted(name for name in named if name not in exported.declared)
    assert missing == [], f"the dashboard names metrics the server does not export: {missing}"
