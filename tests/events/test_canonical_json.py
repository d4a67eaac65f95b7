"""Canonical JSON: the appendix examples byte for byte, and the v6+ strictness check."""

import json

import pytest

from homeserver.events.canonical_json import (
    CanonicalJsonError,
    check_strict_canonical_json,
    encode_canonical_json,
    normalise_integral_floats,
)

# (input JSON text, expected canonical output) from appendices.md "Canonical JSON / Examples".
APPENDIX_EXAMPLES = [
    ("{}", "{}"),
    ('{\n    "one": 1,\n    "two": "Two"\n}', '{"one":1,"two":"Two"}'),
    ('{\n    "b": "2",\n    "a": "1"\n}', '{"a":"1","b":"2"}'),
    ('{"b":"2","a":"1"}', '{"a":"1","b":"2"}'),
    (
        """{
    "auth": {
        "success": true,
        "mxid": "@john.doe:example.com",
        "profile": {
            "display_name": "John Doe",
            "three_pids": [
                {
                    "medium": "email",
                    "address": "john.doe@example.org"
                },
                {
                    "medium": "msisdn",
                    "address": "123456789"
                }
            ]
        }
    }
}""",
        '{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":'
        '[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},'
        '"success":true}}',
    ),
    ('{\n    "a": "日本語"\n}', '{"a":"日本語"}'),
    ('{\n    "本": 2,\n    "日": 1\n}', '{"日":1,"本":2}'),
    ('{\n    "a": "\\u65E5"\n}', '{"a":"日"}'),
    ('{\n    "a": null\n}', '{"a":null}'),
]


@pytest.mark.parametrize("source, expected", APPENDIX_EXAMPLES)
def test_appendix_examples_encode_byte_for_byte(source, expected):
    assert encode_canonical_json(json.loads(source)) == expected.encode("utf-8")


def test_appendix_number_example_encodes_after_normalising_integral_floats():
    value = normalise_integral_floats(json.loads('{\n    "a": -0,\n    "b": 1e10\n}'))
    assert encode_canonical_json(value) == b'{"a":0,"b":10000000000}'


def test_negative_zero_float_normalises_to_zero():
    assert encode_canonical_json(normalise_integral_floats({"a": -0.0, "b": [2.0, 2.5]})) == (
        b'{"a":0,"b":[2,2.5]}'
    )


def test_received_floats_are_encoded_as_parsed_like_synapse_does():
    assert encode_canonical_json({"b": 1e10}) == b'{"b":10000000000.0}'


def test_control_characters_use_short_escapes_or_lowercase_unicode_escapes():
    value = {"s": "\x08\t\n\x0c\r\"\\\x00\x1f\x7f/"}
    assert encode_canonical_json(value) == b'{"s":"\\b\\t\\n\\f\\r\\"\\\\\\u0000\\u001f\x7f/"}'


def test_keys_sort_by_code_point_not_by_utf16_unit():
    # U+FF61 sorts before U+1F600 by code point, though its UTF-16 unit is larger.
    value = {"\U0001f600": 1, "\uff61": 2}
    assert encode_canonical_json(value) == '{"\uff61":2,"\U0001f600":1}'.encode()


def test_integers_at_the_edges_of_the_safe_range_are_strict():
    check_strict_canonical_json({"a": 2**53 - 1, "b": -(2**53) + 1, "c": [True, None, "x"]})


@pytest.mark.parametrize(
    "value, path",
    [
        ({"a": 2**53}, "a"),
        ({"a": -(2**53)}, "a"),
        ({"content": {"n": [1, 2, 1.5]}}, "content.n[2]"),
        ({"x": float("nan")}, "x"),
        ({"x": {"y": float("inf")}}, "x.y"),
        ({"x": [{"y": -float("inf")}]}, "x[0].y"),
        ({"x": 1.0}, "x"),
    ],
)
def test_strict_check_rejects_and_names_the_key_path(value, path):
    with pytest.raises(CanonicalJsonError) as exc:
        check_strict_canonical_json(value)
    assert exc.value.path_str == path
    assert path in str(exc.value)


def test_strict_check_rejects_nan_parsed_by_python_json():
    with pytest.raises(CanonicalJsonError, match="not a valid JSON number"):
        check_strict_canonical_json(json.loads('{"a": NaN}'))


def test_strict_check_rejects_non_string_keys_and_non_json_values():
    with pytest.raises(CanonicalJsonError, match="not a string"):
        check_strict_canonical_json({1: "a"})
    with pytest.raises(CanonicalJsonError, match="not JSON"):
        check_strict_canonical_json({"a": {1, 2}})
