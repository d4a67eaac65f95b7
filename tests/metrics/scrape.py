"""Reading a server's /metrics the way Prometheus does, and the metric names a PromQL expression uses."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

# Sample names each metric type exposes, from the family name in its `# TYPE` line.
_SUFFIXES = {"counter": ("",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count"),
             "summary": ("", "_sum", "_count"), "info": ("",), "untyped": ("",)}
_KEYWORDS = {"and", "or", "unless", "bool", "offset"}


class Scrape:
    """One scrape: its text, its samples, and the sample names its `# TYPE` lines declare."""

    def __init__(self, text: str):
        self.text = text
        self.samples: list[tuple[str, dict[str, str], float]] = [
            (sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(text) for sample in family.samples]
        self.declared: set[str] = set()
        for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
            self.declared.update(name + suffix for suffix in _SUFFIXES.get(kind, ("",)))

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples called `name` whose labels include `labels` (0 when there are none)."""
        return sum(value for sample, sample_labels, value in self.samples
                   if sample == name and all(sample_labels.get(k) == v for k, v in labels.items()))

    def label_values(self, name: str, label: str) -> set[str]:
        return {labels[label] for sample, labels, _ in self.samples if sample == name and label in labels}


async def scrape(hs: Any) -> Scrape:
    async with aiohttp.ClientSession(hs.base_url("metrics")) as session, session.get("/metrics") as resp:
        assert resp.status == 200
        return Scrape(await resp.text())


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords and label names left out)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "{}", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if expr[match.end():].lstrip().startswith("(") or match.group() in _KEYWORDS:
            continue
        names.add(match.group())
    return names
