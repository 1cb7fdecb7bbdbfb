"""Local parity: the pump's emulated event source mappings, and ``receive`` of mail without a
sender, as SES takes it (the envelope sender from the SMTP session, possibly ``<>``)."""

from __future__ import annotations

import json
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import boto3
import pytest

from chalicelib.mail.inbound_email import InboundEmail
from chalicelib.mail.verdicts import Verdicts
from mailroom_local.mappings import LocalLambda, MappingStore
from mailroom_local.pump import pump_once
from mailroom_local.receive import as_stored, notification, receive
from tests.conftest import REGION, Stage

NO_SENDER = b"To: support@mailroom.test\r\nSubject: no sender\r\n\r\nhello\r\n"


def test_a_disabled_mapping_invokes_nothing_and_leaves_the_mail_in_the_queue(
    aws: Stage, tmp_path: Path
) -> None:
    store = MappingStore(tmp_path / "mappings.json")
    queue = aws.queues["inbound-bridge"]
    store.create(
        function="inbound_bridge",
        queue_arn=queue.arn,
        region=REGION,
        report_batch_item_failures=True,
    )
    lambda_client = LocalLambda(tmp_path / "mappings.json")
    [mapping] = lambda_client.list_event_source_mappings(EventSourceArn=queue.arn)[
        "EventSourceMappings"
    ]
    lambda_client.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
    sqs = boto3.client("sqs", region_name=REGION)
    sqs.send_message(
        QueueUrl=queue.url, MessageBody="{}", MessageGroupId="g", MessageDeduplicationId="d"
    )
    invoked: list[Any] = []

    handled = pump_once(
        sqs,
        queue.url,
        queue.arn,
        lambda event, context: invoked.append(event),
        name="inbound_bridge",
        region=REGION,
        batch_size=10,
        report_batch_item_failures=True,
        wait_seconds=0,
        enabled=lambda: store.enabled("inbound_bridge"),
    )

    assert (handled, invoked) == (0, [])
    assert lambda_client.get_event_source_mapping(UUID=mapping["UUID"])["State"] == "Disabled"
    assert [m["Body"] for m in aws.drain(queue.url)] == ["{}"]


@pytest.mark.parametrize(
    ("given", "headers", "expected"),
    [
        (None, b"", ""),
        (None, b"From: Ann <ann@x.example>\r\n", "ann@x.example"),
        (None, b"Return-Path: <bounces@x.example>\r\nFrom: ann@x.example\r\n", "bounces@x.example"),
        ("<>", b"From: ann@x.example\r\n", ""),
        ("mta@y.example", b"", "mta@y.example"),
    ],
)
def test_the_envelope_sender_is_given_or_the_headers_else_empty(
    given: str | None, headers: bytes, expected: str
) -> None:
    note = notification(
        headers + NO_SENDER,
        bucket="b",
        key="raw/x",
        recipients=["a@b.example"],
        verdicts={},
        sender=given,
    )

    assert note["mail"]["source"] == expected


def test_receive_of_an_unreadable_file_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "local.json").write_text(json.dumps({"bucket": "b", "region": REGION}))

    code = receive(tmp_path, tmp_path / "missing.eml")

    assert code == 1
    assert capsys.readouterr().out.startswith("error: ")


def test_the_stored_copy_carries_ses_trace_fields_on_top_even_without_a_header_block() -> None:
    """SES's S3 action stores every message with its own Return-Path and Received on top."""
    headerless = b"Send list submissions to\n\tlist@x.example\n\nToday's topics: ...\n"

    stored = as_stored(headerless, sender="", recipients=["a@b.example"], ses_id="abc")
    parsed = message_from_bytes(stored, policy=default_policy)

    assert parsed["Return-Path"] == "<>"
    assert "with SMTP id abc for a@b.example" in str(parsed["Received"])
    assert stored.endswith(headerless)
    assert InboundEmail.from_mime(
        stored, recipients=["a@b.example"], verdicts=Verdicts(), s3_location=None
    ).recipients == ("a@b.example",)
