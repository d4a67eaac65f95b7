"""The privacy service's pure logic, without servers: commands, language, retention, export assembly."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from appservices.privacy.attachment_crypto import decrypt_attachment, encrypt_attachment
from appservices.privacy.commands import Command, detect_language, parse_command, reply_language
from appservices.privacy.config import PrivacyConfigError, RetentionConfig, parse_privacy_config, registration
from appservices.privacy.export_format import (
    EXPORT_CLASSES,
    Collected,
    assemble,
    build_zip,
    extract_urls,
    room_kind,
)
from appservices.privacy.retention import DAY_MS, Account, inactivity_decision, room_lifetime_ms

MINIMAL = {"homeserver_url": "http://127.0.0.1:8008/", "server_name": "example.org", "as_token": "a",
           "hs_token": "h", "admin_api_token": "t"}


@pytest.mark.parametrize(("text", "expected"), [
    ("help", Command("help", (), None)),
    ("HULP", Command("help", (), "nl")),
    ("export", Command("export", (), None)),
    ("erase", Command("erase", (), "en")),
    ("wis K7Q2AB", Command("erase", ("K7Q2AB",), "nl")),
    ("erase k7q2ab", Command("erase", ("k7q2ab",), "en")),
    ("afmelden-ABCDEF", Command("signout", ("ABCDEF",), "nl")),
    ("signout PHONE", Command("signout", ("PHONE",), "en")),
    ("toestemming akkoord", Command("accept", (), "nl")),
    ("consent accept", Command("accept", (), "en")),
    ("taal en", Command("language", ("en",), "nl")),
    ("!sessions", Command("sessions", (), "en")),
    ("hallo daar", Command("unknown", ("daar",), "nl")),
    ("", Command("unknown")),
])
def test_commands_are_parsed_in_both_languages(text, expected):
    assert parse_command(text) == expected


@pytest.mark.parametrize(("text", "language"), [
    ("I want my data please", "en"), ("ik wil graag mijn gegevens", "nl"), ("export", None), ("help", None),
    ("sessions", "en"), ("sessies", "nl"),
])
def test_language_is_detected_from_command_and_common_words(text, language):
    assert detect_language(text) == language


def test_the_reply_language_is_the_choice_then_the_message_then_the_default():
    assert reply_language(Command("help", (), "en"), "nl", "nl") == "nl"
    assert reply_language(Command("help", (), "en"), None, "nl") == "en"
    assert reply_language(Command("help", (), None), None, "nl") == "nl"


def test_urls_are_extracted_without_trailing_punctuation_and_once_each():
    text = "zie https://example.org/a. en (www.voorbeeld.nl/b) en https://example.org/a, of http://x.test/p_(1)!"
    assert extract_urls(text) == ["https://example.org/a", "www.voorbeeld.nl/b", "http://x.test/p_(1)"]
    assert extract_urls("geen links hier") == []


def test_room_kinds_are_private_group_or_public():
    assert room_kind("!dm", {"!dm"}, {"name": "x", "joined_members": 5}) == "private"
    assert room_kind("!a", set(), {"join_rules": "public", "joined_members": 2}) == "public"
    assert room_kind("!b", set(), {"joined_members": 2}) == "private"
    assert room_kind("!c", set(), {"name": "Club", "joined_members": 2, "join_rules": "invite"}) == "group"
    assert room_kind("!d", set(), None) == "group"


def test_export_assembly_sorts_messages_by_room_kind_and_collects_links_and_media():
    data = Collected(user_id="@a:example.org", request_id="PR1", generated_ts=5)
    data.rooms = [{"room_id": "!p", "kind": "private"}, {"room_id": "!g", "kind": "group"},
                  {"room_id": "!o", "kind": "public"}]
    data.events = [
        {"event_id": "$2", "room_id": "!g", "type": "m.room.message", "origin_server_ts": 2,
         "content": {"body": "kijk https://a.example/x"}},
        {"event_id": "$1", "room_id": "!p", "type": "m.room.message", "origin_server_ts": 1, "content": {"body": "hoi"}},
        {"event_id": "$3", "room_id": "!o", "type": "m.reaction", "origin_server_ts": 3, "content": {}},
    ]
    data.media = [{"media_id": "abc", "upload_name": "kat foto.png", "bytes": b"PNG"},
                  {"media_id": "gone", "bytes": None}]
    data.unreachable = {"logins": "not served"}
    export = assemble(data, "example.org")
    assert set(EXPORT_CLASSES) <= set(export)
    assert export["message_counts"] == {"private": 1, "group": 1, "public": 1}
    assert export["links"] == [{"url": "https://a.example/x", "event_id": "$2", "room_id": "!g", "ts": 2}]
    assert [(m["mxc"], m["file"]) for m in export["media"]] == [
        ("mxc://example.org/abc", "media/abc-kat_foto.png"), ("mxc://example.org/gone", None)]
    assert export["payment_details"]["held"] is False
    archive = zipfile.ZipFile(io.BytesIO(build_zip(data, "example.org")))
    assert sorted(archive.namelist()) == ["export.json", "index.html", "media/abc-kat_foto.png"]
    assert json.loads(archive.read("export.json"))["unreachable"] == {"logins": "not served"}
    assert b"not served" in archive.read("index.html")


def test_attachments_round_trip_and_a_changed_byte_is_refused():
    ciphertext, info = encrypt_attachment(b"geheime export")
    assert ciphertext != b"geheime export" and info["key"]["alg"] == "A256CTR" and info["v"] == "v2"
    assert decrypt_attachment(ciphertext, info) == b"geheime export"
    with pytest.raises(ValueError):
        decrypt_attachment(bytes([ciphertext[0] ^ 1]) + ciphertext[1:], info)


POLICY = RetentionConfig(inactivity_days=180, warn_days_before=14, room_min_lifetime_days=1,
                         room_max_lifetime_days=365, room_default_lifetime_days=None)
NOW = 1000 * DAY_MS


@pytest.mark.parametrize(("idle_days", "warned_days_ago", "expected"), [
    (100, None, None),
    (166, None, "warn"),  # 180 - 14
    (170, 4, None),  # warned, not yet idle long enough
    (181, 4, None),  # idle long enough, but the warning is only 4 days old
    (181, 14, "erase"),
    (10, 20, "clear"),  # came back after the warning
])
def test_inactive_accounts_are_warned_then_erased(idle_days, warned_days_ago, expected):
    account = Account("@a:x", NOW - idle_days * DAY_MS)
    warned = None if warned_days_ago is None else NOW - warned_days_ago * DAY_MS
    assert inactivity_decision(account, warned, NOW, POLICY) == expected


def test_admins_deactivated_and_bot_accounts_are_never_erased_for_inactivity():
    for account in (Account("@a:x", 0, admin=True), Account("@b:x", 0, deactivated=True),
                    Account("@c:x", 0, appservice=True)):
        assert inactivity_decision(account, 0, NOW, POLICY) is None
    assert inactivity_decision(Account("@d:x", 0), None, NOW, RetentionConfig(inactivity_days=None)) is None


def test_room_lifetimes_follow_m_room_retention_within_the_limits():
    assert room_lifetime_ms({"max_lifetime": 30 * DAY_MS}, POLICY, public=False) == 30 * DAY_MS
    assert room_lifetime_ms({"max_lifetime": 1000}, POLICY, public=False) == DAY_MS  # raised to the minimum
    assert room_lifetime_ms({"max_lifetime": 9999 * DAY_MS}, POLICY, public=False) == 365 * DAY_MS
    assert room_lifetime_ms(None, POLICY, public=False) is None  # no policy, no default: kept
    assert room_lifetime_ms({"max_lifetime": 30 * DAY_MS}, POLICY, public=True) is None  # public rooms skipped
    with_default = RetentionConfig(room_default_lifetime_days=90, room_min_lifetime_days=1)
    assert room_lifetime_ms({}, with_default, public=False) == 90 * DAY_MS


def test_config_reports_every_problem_naming_its_key():
    with pytest.raises(PrivacyConfigError) as raised:
        parse_privacy_config({"server_name": "x", "language": "de", "database": {"engine": "mysql"},
                              "export": {"expiry_hours": -1}, "consent": {"version": "2", "documents": {}}})
    message = str(raised.value)
    for key in ("homeserver_url", "as_token", "hs_token", "admin_api_token", "language", "database.engine",
                "export.expiry_hours", "consent.version"):
        assert key in message, key


def test_config_defaults_and_the_registration_claim_only_the_bot_exclusively():
    config = parse_privacy_config(MINIMAL)
    assert config.language == "nl" and config.homeserver_url == "http://127.0.0.1:8008"
    assert config.bot_user_id == "@privacy:example.org" and config.database.engine == "sqlite"
    reg = registration(config)
    assert reg["sender_localpart"] == "privacy"
    assert reg["namespaces"]["users"] == [{"regex": r"@privacy:example\.org", "exclusive": True}]
    assert reg["as_token"] == "a" and reg["hs_token"] == "h" and reg["url"] == config.public_url


def test_the_html_summary_escapes_what_members_wrote():
    data = Collected(user_id="@a:example.org", request_id="PR1", generated_ts=5)
    data.profile = {"displayname": "<b>Anna</b>"}
    data.rooms = [{"room_id": "!g", "kind": "group"}]
    data.events = [{"event_id": "$1", "room_id": "!g", "type": "m.room.message", "origin_server_ts": 1,
                    "content": {"body": "<script>alert(1)</script>"}}]
    page = zipfile.ZipFile(io.BytesIO(build_zip(data, "example.org"))).read("index.html").decode()
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;Anna&lt;/b&gt;" in page
