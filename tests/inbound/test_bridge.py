"""The inbound bridge end to end in moto: webhook → SNS FIFO → SQS FIFO → bridge → FreeScout."""

from __future__ import annotations

import base64
import json
from typing import Any

import boto3
import responses

from tests.conftest import REGION, Stage
from tests.inbound.conftest import CONVERSATIONS, created


def _posts(freescout: responses.RequestsMock, url: str = CONVERSATIONS) -> list[Any]:
    return [c for c in freescout.calls if c.request.method == "POST" and c.request.url == url]


def _dlq(aws: Stage) -> list[dict[str, Any]]:
    return aws.drain(aws.queues["inbound-bridge"].dlq_url)


def test_a_postmark_attachment_that_is_not_base64_is_named_and_the_payload_attached(
    aws: Stage, post: Any, payload: Any, bridge: Any, freescout: responses.RequestsMock
) -> None:
    aws.put_route("support@mailroom.test", "freescout", "3")
    freescout.add(**created(42))
    broken = [
        {"Name": "scan.pdf", "Content": "%%% not base64 %%%", "ContentType": "application/pdf"}
    ]
    post(payload(Attachments=broken))

    _, _, error = bridge()

    assert error is None
    [call] = _posts(freescout)
    [thread] = json.loads(call.request.body)["threads"]
    assert "could not be decoded" in thread["text"]
    assert "scan.pdf" in thread["text"]
    [original] = thread["attachments"]
    assert original["fileName"] == "original-postmark.json"
    kept = json.loads(base64.b64decode(original["data"]))
    assert kept["Attachments"] == broken


def test_happy_path_creates_one_conversation_with_the_attachment(
    aws: Stage, post: Any, payload: Any, bridge: Any, freescout: responses.RequestsMock
) -> None:
    aws.put_route("support@mailroom.test", "freescout", "3")
    freescout.add(**created(42))
    post(payload())

    _, result, error = bridge()

    assert error is None
    assert result == {"batchItemFailures": []}
    [call] = _posts(freescout)
    sent = json.loads(call.request.body)
    assert call.request.headers["X-FreeScout-API-Key"] == "freescout-key"
    assert sent["type"] == "email"
    assert sent["mailboxId"] == 3
    assert sent["customer"] == {
        "email": "ada.customer@example.org",
        "firstName": "Ada",
        "lastName": "Customer",
    }
    [thread] = sent["threads"]
    assert thread["type"] == "customer"
    body, marker = thread["text"].split('<div style="display:none">')
    assert body == "<p>Hello, the secret invoice html body.</p>"
    assert marker.startswith("mailroom-ref-")  # what proves this thread is this email's
    assert thread["cc"] == ["bob.cc@example.org"]
    assert thread["attachments"] == [
        {"fileName": "invoice.pdf", "mimeType": "application/pdf", "data": "JVBERi0xLjQK"}
    ]
    assert sent["imported"] is False
    aws.make_visible("inbound-bridge")
    assert aws.receive(aws.queues["inbound-bridge"].url) == []


def test_same_message_delivered_three_times_creates_one_conversation(
    aws: Stage, payload: Any, bridge: Any, freescout: responses.RequestsMock
) -> None:
    aws.put_route("*", "freescout", "1")
    freescout.add(**created(42))
    sqs = boto3.client("sqs", region_name=REGION)
    body = json.dumps(payload())
    for attempt in range(3):  # SNS/SQS redelivery, Postmark retry and a DLQ redrive look alike
        sqs.send_message(
            QueueUrl=aws.queues["inbound-bridge"].url,
            MessageBody=body,
            MessageGroupId="g",
            MessageDeduplicationId=f"delivery-{attempt}",
        )

    _, _, error = bridge()

    assert error is None
    assert len(_posts(freescout)) == 1


def test_reply_is_threaded_into_its_conversation(
    aws: Stage, post: Any, payload: Any, bridge: Any, freescout: responses.RequestsMock
) -> None:
    aws.put_route("*", "freescout", "1")
    freescout.add(**created(42))
    freescout.add(
        responses.POST, f"{CONVERSATIONS}/42/threads", status=201, headers={"Resource-ID": "9"}
    )
    post(payload())
    bridge()
    reply = payload(
        MessageID="reply-1",
        Subject="Re: Invoice 4711 is wrong",
        Headers=[
            {"Name": "Message-ID", "Value": "<reply-1@mail.example.org>"},
            {"Name": "In-Reply-To", "Value": "<CAE-first-4711@mail.example.org>"},
        ],
    )
    post(reply)

    _, _, error = bridge()

    assert error is None
    assert len(_posts(freescout)) == 1
    [thread_call] = _posts(freescout, f"{CONVERSATIONS}/42/threads")
    assert json.loads(thread_call.request.body)["type"] == "customer"


def test_freescout_503_twice_then_201_creates_one_conversation(
    aws: Stage, post: Any, payload: Any, bridge: Any, freescout: responses.RequestsMock
) -> None:
    aws.put_route("*", "freescout", "1")
    freescout.add(responses.POST, CONVERSATIONS, status=503, body="Service Unavailable")
    freescout.add(responses.POST, CONVERSATIONS, status=503, body="Service Unavailable")
    freescout.add(**created(42))
    post(payload())

    outcomes = []
    for _ in range(3):
        _, _, error = bridge()
        outcomes.append(error is None)
        aws.make_visible("inbound-bridge")

    assert outcomes == [False, False, True]
    assert len(_posts(freescout)) == 3
    assert aws.receive(aws.queues["inbound-bridge"].url) == []
    assert _dlq(aws) == []


def test_freescout_400_dead_letters_with_reason_attributes(
    aws: Stage, post: Any, payload: Any, bridge: Any, freescout: responses.RequestsMock
) -> None:
    aws.put_route("*", "freescout", "99")
    freescout.add(
        responses.POST,
        CONVERSATIONS,
        status=400,
        json={
            "message": "Error occurred",
            "_embedded": {"errors": [{"path": "mailboxId", "message": "Mailbox not found"}]},
        },
    )
    post(payload())

    _, result, error = bridge()

    assert error is None  # dead-lettered is finished: Lambda may delete it
    assert result == {"batchItemFailures": []}
    [dead] = _dlq(aws)
    attributes = {k: v["StringValue"] for k, v in dead["MessageAttributes"].items()}
    assert attributes["mailroom_error_class"] == "ProviderPermanentError"
    assert "Mailbox not found" in attributes["mailroom_reason"]
    assert attributes["mailroom_attempts"] == "1"
    assert attributes["mailroom_disposition"] == "permanent"
    assert "mailroom_first_seen" in attributes
    assert dead["Attributes"]["MessageGroupId"] == aws_group(payload)


def aws_group(payload: Any) -> str:
    import hashlib

    return hashlib.sha256(payload()["OriginalRecipient"].encode()).hexdigest()


def test_freescout_401_dead_letters_as_configuration_error(
    aws: Stage, post: Any, payload: Any, bridge: Any, freescout: responses.RequestsMock
) -> None:
    aws.put_route("*", "freescout", "1")
    freescout.add(responses.POST, CONVERSATIONS, status=401, json={"message": "Not Authorized"})
    post(payload())

    bridge()

    [dead] = _dlq(aws)
    assert dead["MessageAttributes"]["mailroom_error_class"]["StringValue"] == "ProviderAuthError"


def test_gmail_route_for_postmark_mail_is_handed_to_the_gmail_forwarder_queue(
    aws: Stage, post: Any, payload: Any, bridge: Any, freescout: responses.RequestsMock
) -> None:
    aws.put_route("support@mailroom.test", "gmail", "someone@gmail.test")
    post(payload())

    _, _, error = bridge()

    assert error is None
    assert _dlq(aws) == []
    assert _posts(freescout) == []
    [queued] = aws.drain(aws.queues["gmail-forwarder"].url)
    request = json.loads(queued["Body"])
    assert (request["kind"], request["mailbox"]) == ("gmail", "someone@gmail.test")
    assert request["mail"]["source"] == "postmark"


def test_drop_route_drops_without_calling_freescout(
    aws: Stage, post: Any, payload: Any, bridge: Any, freescout: responses.RequestsMock
) -> None:
    aws.put_route("*@mailroom.test", "drop")
    post(payload())

    _, _, error = bridge()

    assert error is None
    assert _posts(freescout) == []
    assert _dlq(aws) == []


def test_no_matching_route_dead_letters(
    aws: Stage, post: Any, payload: Any, bridge: Any, freescout: responses.RequestsMock
) -> None:
    aws.put_route("*@elsewhere.test", "freescout", "1")
    post(payload())

    bridge()

    [dead] = _dlq(aws)
    assert dead["MessageAttributes"]["mailroom_reason"]["StringValue"] == (
        "no routing rule matches the recipient"
    )


def test_one_megabyte_payload_round_trips_through_the_claim_check(
    aws: Stage, post: Any, payload: Any, bridge: Any, freescout: responses.RequestsMock
) -> None:
    aws.put_route("*", "freescout", "1")
    freescout.add(**created(42))
    big = "<p>" + "b" * 1_000_000 + "</p>"
    assert post(payload(HtmlBody=big)).status_code == 200

    _, _, error = bridge()

    assert error is None
    [call] = _posts(freescout)
    assert json.loads(call.request.body)["threads"][0]["text"].startswith(big + "<div")


def test_reply_to_a_conversation_deleted_in_freescout_starts_a_new_one(
    aws: Stage, post: Any, payload: Any, bridge: Any, freescout: responses.RequestsMock
) -> None:
    aws.put_route("*", "freescout", "1")
    freescout.add(**created(42))
    freescout.add(
        responses.POST, f"{CONVERSATIONS}/42/threads", status=404, json={"message": "Not Found"}
    )
    freescout.add(**created(43))
    post(payload())
    bridge()
    post(
        payload(
            MessageID="reply-2",
            Headers=[{"Name": "In-Reply-To", "Value": "<CAE-first-4711@mail.example.org>"}],
        )
    )

    _, _, error = bridge()

    assert error is None
    assert len(_posts(freescout)) == 2
    assert _dlq(aws) == []


def test_a_201_without_resource_id_is_uncertain_and_the_retry_proves_it_instead_of_creating(
    aws: Stage, post: Any, payload: Any, bridge: Any, freescout: responses.RequestsMock
) -> None:
    aws.put_route("*", "freescout", "1")
    freescout.add(responses.POST, CONVERSATIONS, status=201, json={})  # stored, id not said
    post(payload())
    _, _, error = bridge()
    assert error is not None
    aws.make_visible("inbound-bridge")
    [sent] = _posts(freescout)
    first_thread = {
        "id": 9,
        "type": "customer",
        "body": json.loads(sent.request.body)["threads"][0]["text"],
        "createdAt": "2099-01-01T00:00:00Z",
    }
    freescout.add(
        responses.GET,
        CONVERSATIONS,
        json={
            "_embedded": {
                "conversations": [
                    {
                        "id": 42,
                        "subject": "Invoice 4711 is wrong",
                        "createdAt": "2099-01-01T00:00:00Z",
                        "_embedded": {"threads": [first_thread]},
                    }
                ]
            }
        },
    )

    _, _, error = bridge()

    assert error is None
    assert len(_posts(freescout)) == 1
    [search] = [c for c in freescout.calls if c.request.method == "GET"]
    assert "customerEmail=ada.customer%40example.org" in search.request.url
    assert "createdSince=" in search.request.url


def _audit() -> list[Any]:
    from chalicelib.mail.audit import AuditLog
    from chalicelib.platform.settings import get_settings

    return AuditLog.for_settings(
        get_settings(), boto3.client("dynamodb", region_name=REGION)
    ).list()


def test_drop_route_writes_an_audit_record(
    aws: Stage, post: Any, payload: Any, bridge: Any, freescout: responses.RequestsMock
) -> None:
    aws.put_route("*@mailroom.test", "drop")
    post(payload())

    bridge()

    [record] = _audit()
    assert (record.action, record.actor) == ("drop", "inbound_bridge")
    assert record.reason == "routing rule drops this recipient"
    assert record.details["source"] == "postmark"


def test_postmark_spam_for_a_freescout_route_never_reaches_freescout_and_is_audited(
    aws: Stage, post: Any, payload: Any, bridge: Any, freescout: responses.RequestsMock
) -> None:
    aws.put_route("support@mailroom.test", "freescout", "3")
    freescout.add(**created(42))
    headers = [
        {"Name": "X-Spam-Status", "Value": "Yes, score=8.4 required=5.0"},
        {"Name": "Message-ID", "Value": "<spam-1@mail.example.org>"},
    ]
    post(payload(Headers=headers))
    post(payload(MessageID="pm-score", Headers=[{"Name": "X-Spam-Score", "Value": "12.0"}]))

    _, _, error = bridge()

    assert error is None
    assert _posts(freescout) == []
    assert _dlq(aws) == []
    assert sorted((r.action, r.reason) for r in _audit()) == [("drop", "spam"), ("drop", "spam")]
