"""The pure serving rules: which types are inline, how file names are encoded, what type is declared."""

from __future__ import annotations

import pytest

from homeserver.errors import MatrixError
from homeserver.media.filestore import MediaFileStore
from homeserver.media.ids import is_valid_media_id, new_media_id
from homeserver.media.service import parse_freeze_date
from homeserver.media.serving import content_disposition, filename_parameter, served_content_type


@pytest.mark.parametrize(("content_type", "expected"), [
    ("image/png", "inline"), ("IMAGE/PNG", "inline"), ("text/plain; charset=utf-8", "inline"),
    ("text/html", "attachment"), ("image/svg+xml", "attachment"), ("application/pdf", "attachment"),
    ("application/xhtml+xml", "attachment"), ("", "attachment"), (None, "attachment"),
])
def test_disposition_is_inline_only_for_the_specs_safe_types(content_type, expected):
    assert content_disposition(content_type, None) == expected


@pytest.mark.parametrize(("name", "expected"), [
    ("photo.jpg", "filename=photo.jpg"),
    ("two words.txt", "filename*=utf-8''two%20words.txt"),
    ("Zoë.png", "filename*=utf-8''Zo%C3%AB.png"),
    ('quote".txt', "filename*=utf-8''quote%22.txt"),
    ("semi;colon", "filename*=utf-8''semi%3Bcolon"),
    ("日本.txt", "filename*=utf-8''%E6%97%A5%E6%9C%AC.txt"),
])
def test_file_names_are_tokens_or_rfc_5987_encoded(name, expected):
    assert filename_parameter(name) == expected


def test_served_type_defaults_to_octet_stream_and_text_is_declared_utf8():
    assert served_content_type(None) == "application/octet-stream"
    assert served_content_type("garbage") == "application/octet-stream"
    assert served_content_type("text/csv") == "text/csv; charset=UTF-8"
    assert served_content_type("text/plain; charset=latin-1") == "text/plain; charset=latin-1"
    assert served_content_type("image/png") == "image/png"


def test_new_media_ids_are_random_and_pass_validation():
    ids = {new_media_id() for _ in range(100)}
    assert len(ids) == 100 and all(is_valid_media_id(i) for i in ids)
    for bad in ("", "a/b", "..", "a.b", "a%2Fb", "é", "x" * 256):
        assert not is_valid_media_id(bad), bad


def test_freeze_dates_are_utc_unless_they_say_otherwise():
    assert parse_freeze_date(None) is None
    assert parse_freeze_date("2024-09-01") == 1725148800000
    assert parse_freeze_date("2024-09-01T02:00:00+02:00") == 1725148800000


async def test_the_file_store_refuses_a_stream_over_the_limit_and_leaves_no_temporary_file(tmp_path):
    files = MediaFileStore(str(tmp_path))

    async def chunks():
        for _ in range(4):
            yield b"abcd"

    stored = await files.write_stream(chunks(), 16)
    assert stored.length == 16
    with open(files.content_path(stored.content_hash), "rb") as f:
        assert f.read() == b"abcd" * 4
    with pytest.raises(MatrixError) as raised:
        await files.write_stream(chunks(), 15)
    assert raised.value.errcode == "M_TOO_LARGE"
    assert list((tmp_path / "tmp").iterdir()) == []
