"""The e2ee/search benchmark's pure parts: self-signed device keys, the seeded messages, the report.

    .venv/bin/python -m pytest bench/tests -q
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from signedjson.key import decode_verify_key_bytes
from signedjson.sign import verify_signed_json
from unpaddedbase64 import decode_base64

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import e2ee_search  # noqa: E402


def test_device_keys_carry_a_signature_by_the_devices_own_ed25519_key():
    keys = e2ee_search.device_keys("@a:example.org", "DEV1")
    verify_key = decode_verify_key_bytes("ed25519:DEV1", decode_base64(keys["keys"]["ed25519:DEV1"]))
    verify_signed_json(keys, "@a:example.org", verify_key)
    assert keys["device_id"] == "DEV1" and "curve25519:DEV1" in keys["keys"]


def test_marker_words_appear_at_the_configured_rates():
    w = e2ee_search.Workload(messages=10_000)
    rng = random.Random(1)
    vocabulary = e2ee_search.make_vocabulary(500, rng)
    texts = [e2ee_search.message_text(n, w, vocabulary, rng) for n in range(w.messages)]
    assert sum(e2ee_search.RARE_WORD in t.split() for t in texts) == w.messages // w.rare_every
    assert sum(e2ee_search.COMMON_WORD in t.split() for t in texts) == w.messages // w.common_every
    assert all(len(t.split()) == w.words_per_message for t in texts)


def test_the_report_gives_ratios_only_where_both_servers_have_a_figure():
    results = {"ours": {"keys_query": {"median_ms": 5.0}}, "synapse": {"keys_query": {"median_ms": 20.0}}}
    _, rows = e2ee_search.render(results)
    by_name = {r["figure"]: r for r in rows}
    assert by_name["/keys/query all devices, median (ms)"]["ours/syn"] == 0.25
    assert by_name["/search rare word, rank (ms)"]["ours/syn"] is None
