"""Client and federation serialisation of events."""

import orjson

from homeserver.events.event import Event
from homeserver.events.format import (
    plain_client_event,
    plain_client_fragment,
    serialize_for_client,
    serialize_for_federation,
    serialize_for_sync,
)
from homeserver.events.hashing import add_content_hash
from homeserver.events.room_versions import get_room_version

V10, V11 = get_room_version("10"), get_room_version("11")


def make(rv=V10, **overrides) -> Event:
    pdu = {
        "type": "m.room.message",
        "sender": "@alice:example.org",
        "room_id": "!room:example.org",
        "content": {"body": "hello", "msgtype": "m.text"},
        "origin_server_ts": 1000,
        "depth": 3,
        "prev_events": [],
        "auth_events": [],
        "origin": "example.org",
        "signatures": {"example.org": {"ed25519:1": "sig"}},
        "unsigned": {"age_ts": 900, "secret_local": 1, "invite_room_state": [{"type": "m.room.name"}]},
    }
    pdu.update(overrides)
    return Event(add_content_hash(pdu), rv)


def test_client_format_has_exactly_the_client_event_fields():
    event = make()
    assert serialize_for_client(event, now=1500) == {
        "content": {"body": "hello", "msgtype": "m.text"},
        "event_id": event.event_id,
        "origin_server_ts": 1000,
        "room_id": "!room:example.org",
        "sender": "@alice:example.org",
        "type": "m.room.message",
        "unsigned": {"age": 500},
    }


def test_sync_format_omits_room_id_and_state_events_carry_state_key():
    state = make(type="m.room.topic", state_key="", content={"topic": "t"})
    out = serialize_for_sync(state, now=1000, prev_content={"topic": "old"})
    assert "room_id" not in out
    assert out["state_key"] == ""
    assert out["unsigned"] == {"age": 0, "prev_content": {"topic": "old"}}


def test_age_uses_the_local_receipt_time_when_known():
    assert serialize_for_client(make(), now=1500, age_ts=1400)["unsigned"]["age"] == 100


def test_transaction_id_and_extra_unsigned_are_passed_through():
    out = serialize_for_client(make(), now=1000, transaction_id="txn1", unsigned={"membership": "join"})
    assert out["unsigned"] == {"age": 0, "transaction_id": "txn1", "membership": "join"}


def test_a_redacted_event_shows_redacted_content_and_its_redaction():
    event = make(type="m.room.member", state_key="@alice:example.org",
                 content={"membership": "join", "displayname": "Alice"})  # fmt: skip
    because = {"type": "m.room.redaction", "event_id": "$r"}
    out = serialize_for_client(event, now=1000, redacted_because=because)
    assert out["content"] == {"membership": "join"}
    assert out["unsigned"]["redacted_because"] == because
    assert event.content["displayname"] == "Alice", "the stored event is untouched"


def test_redaction_events_show_redacts_both_top_level_and_in_content_in_every_version():
    old = serialize_for_client(make(V10, type="m.room.redaction", content={}, redacts="$t"), now=1000)
    new = serialize_for_client(make(V11, type="m.room.redaction", content={"redacts": "$t"}), now=1000)
    for out in (old, new):
        assert out["redacts"] == "$t" and out["content"]["redacts"] == "$t"


def test_federation_format_is_the_pdu_with_a_fresh_age_and_no_local_unsigned_bits():
    event = make()
    out = serialize_for_federation(event, now=1500, age_ts=1400)
    assert out["unsigned"] == {"age": 100, "invite_room_state": [{"type": "m.room.name"}]}
    assert {k: v for k, v in out.items() if k != "unsigned"} == {
        k: v for k, v in event.pdu.items() if k != "unsigned"
    }


def test_federation_format_of_a_redacted_event_is_the_redacted_pdu():
    out = serialize_for_federation(make(), now=1000, redacted=True)
    assert out["content"] == {}
    assert out["hashes"] == make().pdu["hashes"]
    assert out["unsigned"] == {"age": 0}


def test_the_plain_event_path_gives_what_the_general_one_does():
    events = [make(), make(type="m.room.member", state_key="@bob:example.org", content={"membership": "join"}),
              make(rv=V11, type="m.room.topic", state_key="", content={"topic": "t"})]
    cases = [(None, None), ("txn1", None), (None, {"m.relations": {"m.thread": {"count": 1}}}),
             ("txn2", {"m.relations": {}})]
    for event in events:
        for include_room_id in (True, False):
            for transaction_id, unsigned in cases:
                assert plain_client_event(event, 1500, include_room_id, transaction_id, unsigned) == \
                    serialize_for_client(event, 1500, include_room_id=include_room_id,
                                         transaction_id=transaction_id, unsigned=unsigned)


def test_the_encoded_plain_form_decodes_to_the_plain_event_at_every_call():
    v12 = get_room_version("12")
    events = [make(), make(type="m.room.member", state_key="@bob:example.org", content={"membership": "join"}),
              make(content={"body": "naïve \u2028 \"quoted\"", "msgtype": "m.text", "n": [1, 2.5, None]}),
              # A v12 create event names no room: its room ID comes from its event ID.
              make(rv=v12, type="m.room.create", state_key="", room_id=None, content={"room_version": "12"})]
    for event in events:
        for now in (1500, 99_000):  # the fixed part is kept; the age is each call's own
            fragment = plain_client_fragment(event, now)
            assert orjson.loads(orjson.dumps([fragment])) == [plain_client_event(event, now, True, None, None)]
        assert event.client_json is not None
