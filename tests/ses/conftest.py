"""SES fixtures: raw MIME in the moto bucket, receipt notifications as SES publishes them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import boto3
import pytest

from chalicelib.handlers import dispatch
from tests.conftest import REGION, Stage

PASSING = {
    "spamVerdict": {"status": "PASS"},
    "virusVerdict": {"status": "PASS"},
    "spfVerdict": {"status": "PASS"},
    "dkimVerdict": {"status": "PASS"},
    "dmarcVerdict": {"status": "PASS"},
}


@pytest.fixture(autouse=True)
def _forget_queue_urls() -> Iterator[None]:
    dispatch.queue_url.cache_clear()
    yield
    dispatch.queue_url.cache_clear()


def mime(
    *,
    message_id: str = "<m-1@sender.example>",
    subject: str = "Hello",
    to: str = "support@example.com",
    sender: str = "Alice <alice@sender.example>",
    body: str = "Hi there",
    attachment: bytes | None = None,
) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = "Sun, 22 Nov 2026 10:00:00 +0000"
    message["Message-ID"] = message_id
    message.set_content(body)
    if attachment is not None:
        message.add_attachment(
            attachment, maintype="application", subtype="octet-stream", filename="big.bin"
        )
    return bytes(message.as_bytes())


def notification(
    *,
    bucket: str,
    key: str,
    recipients: list[str],
    verdicts: dict[str, Any] | None = None,
    received_at: datetime | None = None,
    message_id: str = "<m-1@sender.example>",
    headers_truncated: bool = False,
    source: str = "bounces@sender.example",
) -> dict[str, Any]:
    """A ``Received`` notification in SES's shape (``receipt`` verdicts replaceable; ``source``
    the SMTP envelope sender, empty for the null sender ``<>``)."""
    ses_id = key.rsplit("/", 1)[-1]
    common: dict[str, Any] = {"from": ["alice@sender.example"], "subject": "Hello"}
    if not headers_truncated:
        common["messageId"] = message_id
    return {
        "notificationType": "Received",
        "receipt": {
            "timestamp": (received_at or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
            "processingTimeMillis": 420,
            "recipients": recipients,
            **(PASSING if verdicts is None else verdicts),
            "action": {
                "type": "S3",
                "topicArn": "arn:aws:sns:us-east-1:123456789012:mailroom-test-ses-inbound",
                "bucketName": bucket,
                "objectKey": key,
            },
        },
        "mail": {
            "timestamp": datetime.now(UTC).isoformat(),
            "source": source,
            "messageId": ses_id,
            "destination": ["support@example.com"],
            "headersTruncated": headers_truncated,
            "headers": [] if headers_truncated else [{"name": "Subject", "value": "Hello"}],
            "commonHeaders": common,
        },
    }


def sns_envelope(message: dict[str, Any] | str) -> str:
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:mailroom-test-ses-inbound",
            "Message": message if isinstance(message, str) else json.dumps(message),
            "Timestamp": datetime.now(UTC).isoformat(),
        }
    )


Receive = Callable[..., dict[str, Any]]


@pytest.fixture
def receive(aws: Stage) -> Receive:
    """Store ``raw`` under raw/ and queue its notification for the router, as SES would."""

    def put(raw: bytes | None = None, **kwargs: Any) -> dict[str, Any]:
        key = f"raw/{uuid.uuid4().hex}"
        if raw is not None:
            boto3.client("s3", region_name=REGION).put_object(Bucket=aws.bucket, Key=key, Body=raw)
        kwargs.setdefault("recipients", ["support@example.com"])
        note = notification(bucket=aws.bucket, key=key, **kwargs)
        boto3.client("sqs", region_name=REGION).send_message(
            QueueUrl=aws.queues["ses-inbound"].url, MessageBody=sns_envelope(note)
        )
        return note

    return put


def bodies(aws: Stage, queue: str) -> list[dict[str, Any]]:
    """The JSON bodies waiting in ``queue`` (received, left in flight)."""
    return [json.loads(m["Body"]) for m in aws.drain(aws.queues[queue].url)]


def dlq(aws: Stage, queue: str) -> list[dict[str, Any]]:
    return aws.drain(aws.queues[queue].dlq_url)
