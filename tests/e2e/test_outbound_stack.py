"""Outbound end to end through the local stack: signed API and SNS in, the sender, the Postmark
stand-in out, and Postmark's events back into the suppression list and the delivery log."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from chalicelib.mail.delivery_log import DeliveryLog, DeliveryStatus
from chalicelib.mail.suppression import SuppressionList
from chalicelib.platform.auth import sign
from tests.e2e.conftest import aws_client, until

pytestmark = pytest.mark.e2e
Stack = dict[str, Any]


@pytest.fixture
def postmark(stack: Stack) -> Iterator[str]:
    url = str(stack["postmark"]["url"])
    yield url
    requests.delete(f"{url}/_control/faults", timeout=10)
    requests.delete(f"{url}/_control/inactive", timeout=10)


def _request(to: str = "ann@example.org", **extra: Any) -> dict[str, Any]:
    return {
        "correlation_id": f"e2e-{uuid.uuid4()}",
        "from": "Shop <shop@example.com>",
        "to": to,
        "subject": "Your receipt",
        "text_body": "Thanks",
        **extra,
    }


def _submit(
    stack: Stack, request: dict[str, Any], *, secret: str | None = None, age: int = 0
) -> requests.Response:
    body = json.dumps(request).encode()
    outbound = stack["outbound"]
    headers = {"Content-Type": "application/json"}
    if secret != "":
        signed_at = int(time.time()) - age
        value = sign(body, secret or outbound["signing_secret"], timestamp=signed_at)
        headers[outbound["signature_header"]] = value
    return requests.post(outbound["url"], data=body, headers=headers, timeout=10)


def _event(stack: Stack, event: dict[str, Any]) -> requests.Response:
    hook = stack["webhook"]
    return requests.post(
        hook["events_url"], json=event, auth=(hook["username"], hook["password"]), timeout=10
    )


def _sent(postmark: str, correlation_id: str) -> list[dict[str, Any]]:
    messages = requests.get(f"{postmark}/_control/messages", timeout=10).json()["messages"]
    return [m for m in messages if m["Metadata"].get("correlation_id") == correlation_id]


def _history(stack: Stack, correlation_id: str) -> list[tuple[DeliveryStatus, dict[str, str]]]:
    log = DeliveryLog(stack["tables"]["state"], client=aws_client(stack, "dynamodb"))
    return [(e.status, e.details) for e in log.history(correlation_id)]


def _statuses(stack: Stack, correlation_id: str) -> list[DeliveryStatus]:
    return [status for status, _ in _history(stack, correlation_id)]


def _suppressed(stack: Stack, address: str) -> bool:
    suppressions = SuppressionList(stack["tables"]["state"], client=aws_client(stack, "dynamodb"))
    return bool(suppressions.suppressed([address]))


def test_a_signed_request_is_sent_once_and_logged(stack: Stack, postmark: str) -> None:
    request = _request()

    answer = _submit(stack, request)
    replay = requests.post(
        stack["outbound"]["url"],
        data=answer.request.body,
        headers=answer.request.headers,
        timeout=10,
    )

    assert answer.status_code == 202
    assert replay.status_code == 401
    [message] = until(lambda: _sent(postmark, request["correlation_id"]))
    until(lambda: DeliveryStatus.SENT in _statuses(stack, request["correlation_id"]))
    [queued, (status, details)] = _history(stack, request["correlation_id"])
    assert (queued[0], status) == (DeliveryStatus.QUEUED, DeliveryStatus.SENT)
    assert details["postmark_message_id"] == message["MessageID"]


@pytest.mark.parametrize(
    ("secret", "age", "reason"),
    [
        ("", 0, "missing signature header"),
        ("wrong-secret", 0, "signature does not match"),
        (None, 301, "stale signature timestamp"),
    ],
)
def test_unsigned_wrongly_signed_or_stale_requests_are_401(
    stack: Stack, secret: str | None, age: int, reason: str
) -> None:
    answer = _submit(stack, _request(), secret=secret, age=age)

    assert answer.status_code == 401
    assert answer.json()["message"] == reason


def test_the_previous_secret_is_accepted_during_a_rotation(stack: Stack) -> None:
    ssm = aws_client(stack, "ssm")
    name = "/mailroom/local/outbound/signing-secret-previous"
    ssm.put_parameter(Name=name, Value="rotated-out", Type="SecureString", Overwrite=True)
    try:
        # Containers cache secrets for MAILROOM_SECRETS_TTL_SECONDS (5 s locally).
        until(lambda: _submit(stack, _request(), secret="rotated-out").status_code == 202)
    finally:
        ssm.delete_parameter(Name=name)


def test_messages_published_to_the_topic_are_batched_and_sent_once(
    stack: Stack, postmark: str
) -> None:
    before = requests.get(f"{postmark}/_control/requests", timeout=10).json()["requests"]
    requests_ = [_request(to=f"r{i}@example.org") for i in range(10)]
    aws_client(stack, "sns").publish_batch(
        TopicArn=stack["topics"]["outbound"],
        PublishBatchRequestEntries=[
            {
                "Id": str(i),
                "Message": json.dumps(r),
                "MessageGroupId": hashlib.sha256(r["to"].encode()).hexdigest(),
                "MessageDeduplicationId": r["correlation_id"],
            }
            for i, r in enumerate(requests_)
        ],
    )

    for r in requests_:
        until(lambda r=r: _sent(postmark, r["correlation_id"]))
    after = requests.get(f"{postmark}/_control/requests", timeout=10).json()["requests"]
    calls = [c for c in after[len(before) :] if c["path"] == "/email/batch"]
    assert all(len(_sent(postmark, r["correlation_id"])) == 1 for r in requests_)
    assert len(calls) < len(requests_)


def test_inactive_recipients_are_suppressed_and_the_rest_sent_once(
    stack: Stack, postmark: str
) -> None:
    gone = f"gone-{uuid.uuid4().hex[:8]}@example.org"
    requests.post(f"{postmark}/_control/inactive", json={"addresses": [gone]}, timeout=10)
    lost, kept = _request(to=gone), _request(to="ann@example.org", cc=[gone])

    assert _submit(stack, lost).status_code == 202
    assert _submit(stack, kept).status_code == 202

    until(lambda: DeliveryStatus.SUPPRESSED in _statuses(stack, lost["correlation_id"]))
    [message] = until(lambda: _sent(postmark, kept["correlation_id"]))
    assert message["Recipients"] == ["ann@example.org"]
    assert _sent(postmark, lost["correlation_id"]) == []
    assert _suppressed(stack, gone)


def test_rate_limited_once_then_sent_once(stack: Stack, postmark: str) -> None:
    requests.post(f"{postmark}/_control/faults", json={"status": 429, "count": 1}, timeout=10)
    request = _request()

    assert _submit(stack, request).status_code == 202

    until(lambda: _sent(postmark, request["correlation_id"]))
    until(lambda: DeliveryStatus.SENT in _statuses(stack, request["correlation_id"]))
    assert len(_sent(postmark, request["correlation_id"])) == 1


def test_a_timeout_after_postmark_accepted_is_not_sent_again(stack: Stack, postmark: str) -> None:
    # The stand-in answers after 4 s; the local stack gives up after 3 s (a timeout), but
    # the stand-in still accepts the message, as Postmark would.
    requests.post(f"{postmark}/_control/faults", json={"delay_ms": 4000}, timeout=10)
    request = _request()

    assert _submit(stack, request).status_code == 202
    until(lambda: _sent(postmark, request["correlation_id"]), seconds=30)
    requests.delete(f"{postmark}/_control/faults", timeout=10)

    until(lambda: DeliveryStatus.SENT in _statuses(stack, request["correlation_id"]), seconds=60)
    [(_, details)] = [h for h in _history(stack, request["correlation_id"]) if h[0] == "sent"]
    assert details["found_by"] == "search"
    assert len(_sent(postmark, request["correlation_id"])) == 1


def test_a_hard_bounce_suppresses_the_next_send_until_reactivated(
    stack: Stack, postmark: str
) -> None:
    address = f"bouncy-{uuid.uuid4().hex[:8]}@example.org"
    bounce = {
        "RecordType": "Bounce",
        "ID": 42,
        "Type": "HardBounce",
        "MessageID": str(uuid.uuid4()),
        "Email": address,
        "BouncedAt": "2026-11-22T10:00:00Z",
        "Inactive": True,
        "Metadata": {"correlation_id": "e2e-earlier"},
    }
    assert _event(stack, bounce).status_code == 200
    first = _request(to=address)
    assert _submit(stack, first).status_code == 202
    until(lambda: DeliveryStatus.SUPPRESSED in _statuses(stack, first["correlation_id"]))

    reactivate = {
        "RecordType": "SubscriptionChange",
        "MessageID": str(uuid.uuid4()),
        "Recipient": address,
        "ChangedAt": "2026-11-22T11:00:00Z",
        "SuppressSending": False,
        "SuppressionReason": None,
    }
    assert _event(stack, reactivate).status_code == 200
    second = _request(to=address)
    assert _submit(stack, second).status_code == 202

    until(lambda: _sent(postmark, second["correlation_id"]))
    assert _sent(postmark, first["correlation_id"]) == []
