"""Run Synapse's auth rules over cases read from stdin; print one verdict per case as JSON.

Executed by test_auth_against_synapse.py with a Python that has Synapse installed (it
is not a dependency of the project). Input: a JSON list of
`{"version", "event": {"pdu", "rejected"}, "state": [{"pdu", "rejected"}, ...]}`.
Output: a JSON list of `[allowed, reason]`.

Synapse computes event IDs from the content hash and cannot be told otherwise, so the
create event's test ID (and the v12 room ID derived from it) is rewritten to the ID
Synapse computes before the other events are built.
"""

from __future__ import annotations

import copy
import json
import sys
from typing import Any

import synapse.event_auth  # noqa: F401  (first: synapse.state and event_auth import each other)
from synapse.api.errors import SynapseError
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
from synapse.event_auth import _check_create, check_state_dependent_auth_rules
from synapse.events import make_event_from_dict


def _rewrite(value: Any, mapping: dict[str, str]) -> Any:
    if isinstance(value, str):
        return mapping.get(value, value)
    if isinstance(value, list):
        return [_rewrite(v, mapping) for v in value]
    if isinstance(value, dict):
        return {k: _rewrite(v, mapping) for k, v in value.items()}
    return value


def _event(spec: dict[str, Any], room_version: Any, mapping: dict[str, str]) -> Any:
    pdu = _rewrite(copy.deepcopy(spec["pdu"]), mapping)
    pdu.setdefault("hashes", {"sha256": "aGFzaA"})
    if spec["v1_refs"]:
        for field in ("auth_events", "prev_events"):
            pdu[field] = [[e, {"sha256": "aGFzaA"}] for e in pdu.get(field, [])]
    return make_event_from_dict(pdu, room_version, rejected_reason=spec.get("rejected"))


def verdict(case: dict[str, Any]) -> list[Any]:
    room_version = KNOWN_ROOM_VERSIONS[case["version"]]
    try:
        mapping: dict[str, str] = {}
        creates = [s for s in case["state"] if s["pdu"]["type"] == "m.room.create"]
        if creates and not creates[0]["v1_refs"]:
            old = creates[0]["event_id"]
            new = _event(creates[0], room_version, {}).event_id
            mapping = {old: new, "!" + old[1:]: "!" + new[1:]}
        event = _event(case["event"], room_version, mapping)
        if event.type == "m.room.create":
            _check_create(event)
        else:
            state = [_event(s, room_version, mapping) for s in case["state"]]
            check_state_dependent_auth_rules(event, state)
    except SynapseError as e:
        return [False, e.msg]
    except Exception as e:  # Synapse raises plain errors on some malformed content
        return [False, f"{type(e).__name__}: {e}"]
    return [True, ""]


if __name__ == "__main__":
    json.dump([verdict(c) for c in json.load(sys.stdin)], sys.stdout)
