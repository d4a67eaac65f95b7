"""Pure parts of search: words of a term, what gets indexed, batch tokens, request checks."""

from __future__ import annotations

import pytest

from homeserver.directory.search import parse_batch, parse_room_events, texts_to_index
from homeserver.errors import MatrixError
from homeserver.events.event import Event
from homeserver.events.room_versions import get_room_version
from storage.stores.search import search_words


@pytest.mark.parametrize(("term", "words"), [
    ("Hello, World!", ["hello", "world"]),
    ('"quoted" OR NOT', ["quoted", "or", "not"]),
    ("again again", ["again"]),
    ("  ", []),
])
def test_search_terms_become_lower_case_words_without_operators(term, words):
    assert search_words(term) == words


@pytest.mark.parametrize(("event_type", "content", "texts"), [
    ("m.room.message", {"body": "hi"}, [("content.body", "hi")]),
    ("m.room.name", {"name": "Lobby"}, [("content.name", "Lobby")]),
    ("m.room.topic", {"topic": "chat"}, [("content.topic", "chat")]),
    ("m.room.message", {"body": 5}, []),
    ("m.room.message", {"body": "   "}, []),
    ("m.reaction", {"body": "x"}, []),
])
def test_only_message_bodies_names_and_topics_are_indexed(event_type, content, texts):
    event = Event({"type": event_type, "content": content, "sender": "@a:hs", "room_id": "!r:hs"},
                  get_room_version("11"), event_id="$e")
    assert texts_to_index(event) == texts


def test_batch_tokens_belong_to_one_ordering():
    assert parse_batch(None, "rank") == (0, None)
    assert parse_batch("r20", "rank") == (20, None)
    assert parse_batch("s99", "recent") == (0, 99)
    with pytest.raises(MatrixError):
        parse_batch("s99", "rank")


@pytest.mark.parametrize("criteria", [
    {}, {"search_term": 1}, {"search_term": "x", "keys": ["content.url"]}, {"search_term": "x", "order_by": "x"},
    {"search_term": "x", "event_context": {"before_limit": -1}},
    {"search_term": "x", "groupings": {"group_by": [{"key": "type"}]}},
    {"search_term": "x", "filter": {"senders": "me"}},
])
def test_malformed_room_events_criteria_are_400(criteria):
    with pytest.raises(MatrixError) as raised:
        parse_room_events(criteria)
    assert raised.value.http_status == 400
