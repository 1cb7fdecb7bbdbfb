"""The HTTP edge is the only gate: what it accepts parses in the queue, and every malformed
body gets a 4xx JSON answer naming its problem on each of the three POST endpoints."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import boto3
import pytest

from chalicelib.mail.outbound import parse_outbound
from chalicelib.platform import claimcheck
from chalicelib.platform.envelope import unwrap
from chalicelib.providers.postmark.inbound import parse_postmark_inbound
from tests.conftest import REGION, Stage
from tests.edge.conftest import ENDPOINTS, Post, valid_body


def _queued(aws: Stage, queue: str) -> list[str]:
    """The payloads on ``queue`` as its consumer sees them (envelope and claim check undone)."""
    return [claimcheck.check_out(unwrap(m["Body"])[0]) for m in aws.drain(aws.queues[queue].url)]


def _rejected_keys(aws: Stage) -> list[str]:
    listed = boto3.client("s3", region_name=REGION).list_objects_v2(
        Bucket=aws.bucket, Prefix="rejected/"
    )
    return [o["Key"] for o in listed.get("Contents", [])]


def test_an_inbound_body_with_a_utf8_bom_is_accepted_and_parses_in_the_bridge(
    aws: Stage, post: Post
) -> None:
    body = b"\xef\xbb\xbf" + json.dumps(valid_body(ENDPOINTS[0])).encode()

    response = post(ENDPOINTS[0], body)

    assert response.status_code == 200
    [queued] = _queued(aws, "inbound-bridge")
    assert parse_postmark_inbound(queued).message_id == json.loads(response.body)["message_id"]


def test_an_inbound_body_with_characters_sqs_refuses_travels_escaped(
    aws: Stage, post: Post
) -> None:
    data = valid_body(ENDPOINTS[0])
    data["TextBody"] = "odd \uffff char"

    assert post(ENDPOINTS[0], json.dumps(data, ensure_ascii=False).encode()).status_code == 200

    [queued] = _queued(aws, "inbound-bridge")
    assert "\uffff" not in queued
    assert parse_postmark_inbound(queued).text_body == "odd \uffff char"


@pytest.mark.parametrize(
    ("mangle", "code", "named"),
    [
        (lambda text: text.encode("utf-16"), "invalid_encoding", "UTF-16"),
        (lambda text: text.encode() + b"\xc3", "invalid_encoding", "UTF-8"),
        (
            lambda text: text.replace('"', '"\\ud800', 1).encode(),
            "invalid_encoding",
            "surrogate",
        ),
        (lambda text: ("[" * 10_000 + "]" * 10_000).encode(), "nested_too_deeply", "nested"),
        (
            lambda text: (text[:-1] + ', "x": ' + "[" * 300 + "]" * 300 + "}").encode(),
            "nested_too_deeply",
            "nested",
        ),
        (lambda text: text[:-1].encode(), "invalid_json", "line 1"),
    ],
    ids=["utf16", "bad-utf8", "lone-surrogate", "10000-deep", "unknown-300-deep", "truncated"],
)
def test_malformed_bodies_are_400_naming_the_problem_on_every_endpoint(
    aws: Stage, post: Post, mangle: Any, code: str, named: str
) -> None:
    kept = []
    for path in ENDPOINTS:
        body = mangle(json.dumps(valid_body(path)))

        response = post(path, body)

        answer = json.loads(response.body)
        assert (response.status_code, answer["error"]) == (400, code), path
        assert named in answer["message"], path
        if path != "/v1/outbound":  # the webhooks keep what they refuse, as the README says
            kept.append(f"rejected/{hashlib.sha256(body).hexdigest()}.json")
    assert _queued(aws, "inbound-bridge") == _queued(aws, "outbound-sender") == []
    assert sorted(_rejected_keys(aws)) == sorted(set(kept))


HEADER_INJECTIONS = [
    ({"subject": "Hi\r\nBcc: victim@example.net"}, "subject"),
    ({"from": "Shop\r\nBcc: victim@example.net <shop@example.com>"}, "from"),
    ({"reply_to": "Help\n <help@example.com>"}, "reply_to"),
    ({"to": ["Ann\r\nBcc: x@example.net <ann@example.org>"]}, "to.0"),
    ({"cc": ["Bob\x00 <bob@example.org>"]}, "cc.0"),
    ({"bcc": ["Eve\u2028 <eve@example.org>"]}, "bcc.0"),
    ({"tag": "receipt\r\nX-Evil: 1"}, "tag"),
    ({"headers": {"X-Note": "a\r\nBcc: victim@example.net"}}, "headers.X-Note"),
    ({"headers": {"X-Note\r\nBcc": "victim@example.net"}}, "headers.X-Note\\x0d\\x0aBcc.[key]"),
    ({"headers": {"X Note": "v"}}, "headers.X Note.[key]"),
    (
        {"attachments": [{"name": "a\r\n.pdf", "content": "QQ==", "content_type": "text/plain"}]},
        "attachments.0.name",
    ),
]


def test_control_characters_in_header_fields_are_400_naming_the_field(
    aws: Stage, post: Post
) -> None:
    for overrides, field in HEADER_INJECTIONS:
        body = json.dumps({**valid_body("/v1/outbound"), **overrides}).encode()

        response = post("/v1/outbound", body)

        answer = json.loads(response.body)
        assert (response.status_code, answer["error"]) == (400, "invalid_payload"), field
        assert answer["fields"] == [field]
    assert _queued(aws, "outbound-sender") == []


def test_custom_headers_may_not_set_recipients_or_origin(aws: Stage, post: Post) -> None:
    for name in ["To", "cc", "BCC", "From", "Sender", "reply-to", "Return-Path", "Message-ID"]:
        request = {**valid_body("/v1/outbound"), "headers": {name: "victim@example.net"}}

        response = post("/v1/outbound", json.dumps(request).encode())

        answer = json.loads(response.body)
        assert (response.status_code, answer["fields"]) == (400, ["headers"]), name
        assert name in answer["message"]
    assert _queued(aws, "outbound-sender") == []


def test_an_accepted_outbound_request_is_what_the_sender_parses(aws: Stage, post: Post) -> None:
    request = {**valid_body("/v1/outbound"), "subject": "Ünïcödé 😀 subject"}
    request["headers"] = {"X-Order": "42"}

    assert post("/v1/outbound", json.dumps(request).encode()).status_code == 202

    [queued] = _queued(aws, "outbound-sender")
    email = parse_outbound(queued)
    assert (email.subject, email.headers) == ("Ünïcödé 😀 subject", {"X-Order": "42"})


def test_an_event_time_that_overflows_utc_is_stored_not_500(aws: Stage, post: Post) -> None:
    bounce = {**valid_body("/webhooks/postmark/events"), "BouncedAt": "9999-12-31T23:59:59-23:59"}

    response = post("/webhooks/postmark/events", json.dumps(bounce).encode())

    assert response.status_code == 200
