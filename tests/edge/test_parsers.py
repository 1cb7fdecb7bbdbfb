"""The shared parsers: what the edge answers and what the queue consumers call poison agree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chalicelib.mail.outbound import parse_outbound
from chalicelib.platform.errors import PoisonMessageError
from chalicelib.platform.payload import MAX_DEPTH, PayloadRejected, nesting_depth
from chalicelib.providers.postmark.events import parse_postmark_event
from chalicelib.providers.postmark.inbound import parse_postmark_inbound

EVENTS = Path(__file__).resolve().parents[1] / "events"
INBOUND = (EVENTS / "postmark_inbound_basic.json").read_bytes()


def _inbound(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(INBOUND)
    data.update(overrides)
    return data


def _rejected(payload: bytes | str) -> PayloadRejected:
    with pytest.raises(PayloadRejected) as caught:
        parse_postmark_inbound(payload)
    return caught.value


def test_a_rejection_is_poison_and_names_each_failing_field_and_why() -> None:
    data = _inbound(FromFull={"Name": "no address"})
    del data["MessageID"]

    err = _rejected(json.dumps(data))

    assert isinstance(err, PoisonMessageError)
    assert err.fields == ["FromFull.Email", "MessageID"]
    assert err.reason.startswith("not a Postmark inbound payload: ")
    assert "FromFull.Email: Field required" in err.reason
    assert "MessageID: Field required" in err.reason


def test_a_utf8_bom_is_dropped_alike_from_bytes_and_text() -> None:
    from_bytes = parse_postmark_inbound(b"\xef\xbb\xbf" + INBOUND)
    from_text = parse_postmark_inbound("\ufeff" + INBOUND.decode())

    assert from_bytes == from_text == parse_postmark_inbound(INBOUND)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (INBOUND.decode().encode("utf-16"), "UTF-16"),
        (INBOUND.decode().encode("utf-16-le"), "UTF-16-LE"),
        (INBOUND.decode().encode("utf-32"), "UTF-32"),
        (b'{"MessageID": "\xff\xfe"}', "not valid UTF-8"),
    ],
)
def test_bodies_not_in_utf8_are_rejected_naming_the_encoding(body: bytes, named: str) -> None:
    err = _rejected(body)

    assert err.code == "invalid_encoding"
    assert named in err.reason


def test_a_lone_surrogate_escape_is_rejected_naming_its_field() -> None:
    body = INBOUND.decode().replace('"Invoice 4711 is wrong"', '"Invoice \\ud800"')

    err = _rejected(body)

    assert (err.code, err.fields) == ("invalid_encoding", ["Subject"])
    assert parse_postmark_inbound(body.replace("\\ud800", "\\ud83d\\ude00")).subject.endswith("😀")


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 300, 10_000, 200_000])
def test_deep_nesting_is_rejected_without_recursion(depth: int) -> None:
    unknown = "[" * depth + "]" * depth
    body = INBOUND.decode()[:-2] + f', "Extra": {unknown}}}'

    err = _rejected(body)

    assert err.code == "nested_too_deeply"
    assert "nested too deeply" in err.reason


def test_an_unknown_field_nested_within_the_limit_is_ignored() -> None:
    unknown = {"a": [[{"b": None}]]}
    assert parse_postmark_inbound(json.dumps(_inbound(Extra=unknown))).message_id


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = json.dumps({"TextBody": "[" * 500 + '\\" {{{', "x": [[1]]})
    assert nesting_depth(text) == 3


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "invalid_json"),
        (b"NaN", "invalid_json"),
        (b'{"MessageID": Infinity}', "invalid_json"),
        (b"1" * 5000, "invalid_json"),
        (b"[]", "invalid_payload"),
        (b"null", "invalid_payload"),
    ],
)
def test_what_is_not_a_json_object_is_rejected_with_a_code(body: bytes, code: str) -> None:
    err = _rejected(body)

    assert err.code == code
    assert not err.reason.endswith(": ")


def test_field_paths_escape_control_characters_in_callers_keys() -> None:
    body = json.dumps(
        {
            "correlation_id": "c-1",
            "from": "a@example.org",
            "to": "b@example.org",
            "subject": "s",
            "text_body": "t",
            "headers": {"X-A\r\nBcc": "v"},
        }
    )
    with pytest.raises(PayloadRejected) as caught:
        parse_outbound(body)

    assert caught.value.fields == ["headers.X-A\\x0d\\x0aBcc.[key]"]
    assert "\r" not in caught.value.reason


def test_the_event_parser_rejects_what_storage_could_not_hold() -> None:
    bounce = json.loads((EVENTS / "postmark_event_bounce.json").read_text())

    with pytest.raises(PayloadRejected) as caught:
        parse_postmark_event(json.dumps({**bounce, "Email": "a" * 400 + "@example.org"}))

    assert caught.value.fields == ["Email"]
    assert parse_postmark_event(json.dumps(bounce)).address


def test_an_event_whose_address_is_blank_is_rejected_not_stored_under_an_empty_key() -> None:
    bounce = json.loads((EVENTS / "postmark_event_bounce.json").read_text())

    with pytest.raises(PayloadRejected) as caught:
        parse_postmark_event(json.dumps({**bounce, "Email": "   "}))

    assert "Email is required for Bounce events" in caught.value.reason
