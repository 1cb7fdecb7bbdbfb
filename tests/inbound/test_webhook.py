"""POST /webhooks/postmark/inbound through the Chalice test client, against moto."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import boto3
import pytest

from tests.conftest import REGION, STAGE, Stage
from tests.inbound.conftest import CONVERSATIONS, basic, created


def _objects(aws: Stage, prefix: str) -> list[str]:
    s3 = boto3.client("s3", region_name=REGION)
    listed = s3.list_objects_v2(Bucket=aws.bucket, Prefix=prefix)
    return [o["Key"] for o in listed.get("Contents", [])]


def test_valid_email_is_accepted_and_published_grouped_by_recipient(
    aws: Stage, post: Any, payload: Any
) -> None:
    response = post(payload())

    assert response.status_code == 200
    assert json.loads(response.body) == {
        "status": "accepted",
        "message_id": "73e6d360-66eb-11e1-8e72-a8904824019b",
    }
    [message] = aws.receive(aws.queues["inbound-bridge"].url)
    group = hashlib.sha256(b"support@mailroom.test").hexdigest()
    assert message["Attributes"]["MessageGroupId"] == group
    assert message["Attributes"]["MessageDeduplicationId"] == payload()["MessageID"]
    envelope = json.loads(message["Body"])
    assert json.loads(envelope["Message"])["Subject"] == "Invoice 4711 is wrong"


def test_wrong_credentials_answer_401_quarantine_and_publish_nothing(
    aws: Stage, post: Any, payload: Any
) -> None:
    response = post(payload(), headers=basic(password="wrong"))

    assert response.status_code == 401
    assert json.loads(response.body)["error"] == "unauthorized"
    [key] = _objects(aws, "quarantine/")
    head = boto3.client("s3", region_name=REGION).head_object(Bucket=aws.bucket, Key=key)
    assert head["Metadata"]["reason"] == "unauthenticated"
    assert aws.receive(aws.queues["inbound-bridge"].url) == []


def test_missing_credentials_answer_401(aws: Stage, post: Any, payload: Any) -> None:
    response = post(payload(), headers={"Content-Type": "application/json"})

    assert response.status_code == 401
    assert aws.receive(aws.queues["inbound-bridge"].url) == []


def test_rotated_credentials_current_and_previous_are_both_accepted(
    aws: Stage, post: Any, payload: Any
) -> None:
    ssm = boto3.client("ssm", region_name=REGION)
    name = f"/mailroom/{STAGE}/postmark/webhook-basic-auth"
    ssm.put_parameter(Name=name, Value="postmark:new-pass", Type="SecureString", Overwrite=True)
    ssm.put_parameter(Name=f"{name}-previous", Value="postmark:secret-pass", Type="SecureString")

    new = post(payload(MessageID="m-1"), headers=basic(password="new-pass"))
    old = post(payload(MessageID="m-2"), headers=basic(password="secret-pass"))
    neither = post(payload(MessageID="m-3"), headers=basic(password="older-pass"))

    assert (new.status_code, old.status_code, neither.status_code) == (200, 200, 401)


def test_malformed_json_answers_400_and_keeps_body_under_rejected(aws: Stage, post: Any) -> None:
    body = b'{"MessageID": "x", '

    first = post(body)
    second = post(body)

    assert first.status_code == second.status_code == 400
    assert json.loads(first.body)["error"] == "invalid_json"
    assert _objects(aws, "rejected/") == [f"rejected/{hashlib.sha256(body).hexdigest()}.json"]
    assert aws.receive(aws.queues["inbound-bridge"].url) == []


def test_payload_failing_the_model_names_the_fields_not_the_values(
    aws: Stage, post: Any, payload: Any
) -> None:
    data = payload(FromFull={"Email": "not-an-address"})
    del data["MessageID"]

    response = post(data)

    body = json.loads(response.body)
    assert response.status_code == 400
    assert body["error"] == "invalid_payload"
    assert body["fields"] == ["FromFull.Email", "MessageID"]
    assert "not-an-address" not in response.body.decode()
    assert len(_objects(aws, "rejected/")) == 1


def test_oversize_body_answers_413(
    aws: Stage, post: Any, payload: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILROOM_MAX_WEBHOOK_BYTES", "2048")
    from chalicelib.platform.aws import reset_clients

    reset_clients()
    response = post(payload(TextBody="x" * 4096))

    assert response.status_code == 413
    assert json.loads(response.body)["error"] == "payload_too_large"
    assert aws.receive(aws.queues["inbound-bridge"].url) == []


def test_failed_publish_answers_503_so_postmark_retries(
    aws: Stage, post: Any, payload: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILROOM_INBOUND_TOPIC_ARN", aws.topics["inbound"] + "-missing")
    from chalicelib.platform.aws import reset_clients

    reset_clients()
    response = post(payload())

    assert response.status_code == 503
    assert json.loads(response.body)["error"] == "unavailable"


def test_large_payload_travels_as_a_claim_check(aws: Stage, post: Any, payload: Any) -> None:
    response = post(payload(HtmlBody="<p>" + "a" * 1_000_000 + "</p>"))

    assert response.status_code == 200
    assert len(_objects(aws, "payloads/")) == 1
    [message] = aws.receive(aws.queues["inbound-bridge"].url)
    assert "mailroom_claim_check" in json.loads(message["Body"])["Message"]


def test_missing_credentials_parameter_answers_503_not_401(
    aws: Stage, post: Any, payload: Any
) -> None:
    boto3.client("ssm", region_name=REGION).delete_parameter(
        Name=f"/mailroom/{STAGE}/postmark/webhook-basic-auth"
    )

    response = post(payload())

    assert response.status_code == 503  # our outage: Postmark retries, nothing quarantined
    assert _objects(aws, "quarantine/") == []


def test_a_body_with_a_utf8_bom_is_accepted_and_delivered_by_the_bridge(
    aws: Stage, post: Any, payload: Any, bridge: Any, freescout: Any
) -> None:
    aws.put_route("*", "freescout", "3")
    freescout.add(**created(42))

    response = post(b"\xef\xbb\xbf" + json.dumps(payload()).encode())
    _, result, error = bridge()

    assert response.status_code == 200
    assert (error, result) == (None, {"batchItemFailures": []})
    assert [c.request.url for c in freescout.calls] == [CONVERSATIONS]
    assert aws.drain(aws.queues["inbound-bridge"].dlq_url) == []


def test_what_the_bridge_would_call_poison_is_refused_at_the_edge_naming_the_field(
    aws: Stage, post: Any, payload: Any
) -> None:
    subject = json.dumps(payload()).replace('"Invoice 4711 is wrong"', '"\\ud800"').encode()
    deep = json.dumps(payload(Extra=0)).replace("0}", "[" * 300 + "]" * 300 + "}").encode()

    lone, nested = post(subject), post(deep)

    assert (lone.status_code, json.loads(lone.body)["error"]) == (400, "invalid_encoding")
    assert "Subject" in json.loads(lone.body)["message"]
    assert (nested.status_code, json.loads(nested.body)["error"]) == (400, "nested_too_deeply")
    assert aws.receive(aws.queues["inbound-bridge"].url) == []
    assert len(_objects(aws, "rejected/")) == 2
