"""Inbound delivery when the outcome is unknown: FreeScout (the stand-in, over HTTP) ends with
exactly one conversation or thread per email after timeouts, crashes and redrives."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from chalicelib.mail.inbound_email import EmailSource, delivery_key_for
from chalicelib.platform.aws import aws_client, reset_clients
from mailroom_local import freescout
from tests.conftest import REGION, Stage, serve_wsgi
from tests.e2e.conftest import until

QUEUE = "inbound-bridge"
KEY = "freescout-key"


class FreeScout:
    """The FreeScout stand-in's control side."""

    def __init__(self, url: str) -> None:
        self.url = url

    def conversations(self) -> list[dict[str, Any]]:
        found = requests.get(f"{self.url}/_control/conversations", timeout=5).json()
        return list(found["conversations"])

    def threads(self, conversation_id: int) -> list[dict[str, Any]]:
        [conversation] = [c for c in self.conversations() if c["id"] == conversation_id]
        return list(conversation["_embedded"]["threads"])

    def faults(self, **fault: int) -> None:
        requests.post(f"{self.url}/_control/faults", json=fault, timeout=5)

    def clear_faults(self) -> None:
        requests.delete(f"{self.url}/_control/faults", timeout=5)

    def create_conversation(self, *, subject: str, customer: str, text: str) -> None:
        """A conversation made in FreeScout itself (an agent, or its own mail fetch)."""
        thread = {"type": "customer", "text": text, "customer": {"email": customer}}
        requests.post(
            f"{self.url}/api/conversations",
            json={
                "type": "email",
                "mailboxId": 1,
                "subject": subject,
                "customer": {"email": customer},
                "threads": [thread],
            },
            headers={"X-FreeScout-API-Key": KEY},
            timeout=5,
        ).raise_for_status()


@pytest.fixture
def standin(aws: Stage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FreeScout]:
    app = freescout.create_app(api_key=KEY, state_dir=tmp_path)
    for url in serve_wsgi(app):
        monkeypatch.setenv("MAILROOM_FREESCOUT_URL", url)
        monkeypatch.setenv("MAILROOM_HTTP_TIMEOUT_SECONDS", "1")
        reset_clients()
        aws.put_route("*", "freescout", "1")
        yield FreeScout(url)


def _run(aws: Stage, bridge: Any) -> BaseException | None:
    _, _, error = bridge()
    aws.make_visible(QUEUE)
    return error


def _key(rfc_message_id: str) -> str:
    """The bridge's idempotency key for the email with ``rfc_message_id`` to the test route."""
    return "IDEMPOTENCY#" + delivery_key_for(
        rfc_message_id.lower(), EmailSource.POSTMARK, "", "support@mailroom.test", "freescout"
    )


def _with_id(payload: Any, message_id: str, rfc_message_id: str, **fields: Any) -> Any:
    headers = [{"Name": "Message-ID", "Value": rfc_message_id}]
    return payload(MessageID=message_id, Headers=headers, **fields)


def _crashed_earlier(aws: Stage, rfc_message_id: str) -> None:
    """An earlier attempt claimed the key just now and died; its lock has expired."""
    boto3.client("dynamodb", region_name=REGION).put_item(
        TableName=aws.state_table,
        Item={
            "PK": {"S": _key(rfc_message_id)},
            "SK": {"S": "v1"},
            "status": {"S": "IN_PROGRESS"},
            "lock_expires_at": {"N": "1"},
            "first_attempt_at": {"N": str(int(time.time()))},
        },
    )


def _state(aws: Stage, pk: str, sk: str = "v1") -> dict[str, Any] | None:
    item = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName=aws.state_table, Key={"PK": {"S": pk}, "SK": {"S": sk}}
    )
    return item.get("Item")


def test_a_create_that_timed_out_after_freescout_stored_it_is_proven_not_repeated(
    aws: Stage, standin: FreeScout, post: Any, payload: Any, bridge: Any
) -> None:
    post(payload())
    standin.faults(delay_ms=1500)  # longer than the 1 s HTTP timeout
    _run(aws, bridge)
    standin.clear_faults()
    until(lambda: len(standin.conversations()) == 1)

    error = _run(aws, bridge)

    assert error is None
    [conversation] = standin.conversations()
    record = _state(aws, _key("<CAE-first-4711@mail.example.org>"))
    assert record is not None
    assert record["status"]["S"] == "COMPLETED"
    assert record["result"]["M"]["conversation_id"]["S"] == str(conversation["id"])
    assert record["result"]["M"]["how"]["S"] == "proven"


def test_a_crash_before_freescout_with_the_same_sender_and_subject_still_delivers(
    aws: Stage, standin: FreeScout, post: Any, payload: Any, bridge: Any
) -> None:
    post(_with_id(payload, "monday-alert", "<monday@alerts.example.org>"))
    _run(aws, bridge)  # yesterday's alert: same From, Subject and body
    _crashed_earlier(aws, "<tuesday@alerts.example.org>")
    post(_with_id(payload, "tuesday-alert", "<tuesday@alerts.example.org>"))

    error = _run(aws, bridge)

    assert error is None
    assert len(standin.conversations()) == 2


def _reply(payload: Any, message_id: str, body: str) -> Any:
    return payload(
        MessageID=message_id,
        HtmlBody=body,
        Headers=[
            {"Name": "Message-ID", "Value": f"<{message_id}@mail.example.org>"},
            {"Name": "In-Reply-To", "Value": "<CAE-first-4711@mail.example.org>"},
        ],
    )


def test_a_reply_thread_added_before_a_timeout_is_not_added_again(
    aws: Stage, standin: FreeScout, post: Any, payload: Any, bridge: Any
) -> None:
    post(payload())
    _run(aws, bridge)
    [conversation] = standin.conversations()
    post(_reply(payload, "reply-1", "<p>Thanks, that fixed it.</p>"))
    standin.faults(delay_ms=1500)  # FreeScout adds the thread; we time out first
    _run(aws, bridge)
    standin.clear_faults()
    until(lambda: len(standin.threads(conversation["id"])) == 2)

    error = _run(aws, bridge)

    assert error is None
    assert len(standin.threads(conversation["id"])) == 2  # the email and one reply


def test_another_emails_identical_reply_does_not_prove_ours(
    aws: Stage, standin: FreeScout, post: Any, payload: Any, bridge: Any
) -> None:
    post(payload())
    _run(aws, bridge)
    [conversation] = standin.conversations()
    _crashed_earlier(aws, "<reply-ours@mail.example.org>")  # crashed before FreeScout
    post(_reply(payload, "reply-theirs", "Thanks!"))  # Bob's "Thanks!", same conversation
    _run(aws, bridge)
    assert len(standin.threads(conversation["id"])) == 2
    post(_reply(payload, "reply-ours", "Thanks!"))

    error = _run(aws, bridge)

    assert error is None
    threads = standin.threads(conversation["id"])
    assert len(threads) == 3  # ours is added, not taken for Bob's
    record = _state(aws, _key("<reply-ours@mail.example.org>"))
    assert record is not None
    assert record["result"]["M"]["how"]["S"] == "threaded"


def test_a_stranger_conversation_with_the_same_subject_and_body_does_not_prove_ours(
    aws: Stage, standin: FreeScout, post: Any, payload: Any, bridge: Any
) -> None:
    _crashed_earlier(aws, "<CAE-first-4711@mail.example.org>")  # crashed before FreeScout
    email = payload()
    standin.create_conversation(  # made in FreeScout by hand, not by any key of ours
        subject=email["Subject"], customer=email["From"], text=email["HtmlBody"]
    )
    post(email)

    error = _run(aws, bridge)

    assert error is None
    assert len(standin.conversations()) == 2
    record = _state(aws, _key("<CAE-first-4711@mail.example.org>"))
    assert record is not None
    assert record["result"]["M"]["how"]["S"] == "created"


def test_delivered_but_unrecorded_is_uncertain_and_the_retry_records_map_and_claim_together(
    aws: Stage, standin: FreeScout, post: Any, payload: Any, bridge: Any
) -> None:
    post(payload())
    events = aws_client("dynamodb").meta.events
    refused: list[int] = []

    def refuse(**_: Any) -> None:
        refused.append(1)
        raise RuntimeError("injected")

    events.register("before-call.dynamodb.TransactWriteItems", refuse)
    try:
        _run(aws, bridge)
    finally:
        events.unregister("before-call.dynamodb.TransactWriteItems", refuse)
    claim = _state(aws, _key("<CAE-first-4711@mail.example.org>"))
    assert refused
    assert claim is not None
    assert claim["status"]["S"] == "UNCERTAIN"
    assert _state(aws, "MSGID#<cae-first-4711@mail.example.org>", "FREESCOUT") is None

    error = _run(aws, bridge)

    assert error is None
    assert len(standin.conversations()) == 1
    mapped = _state(aws, "MSGID#<cae-first-4711@mail.example.org>", "FREESCOUT")
    assert mapped is not None
    assert mapped["conversation_id"]["N"] == str(standin.conversations()[0]["id"])


def test_a_redrive_a_day_later_with_a_new_message_id_is_a_duplicate(
    aws: Stage, standin: FreeScout, post: Any, payload: Any, bridge: Any
) -> None:
    post(payload())
    event, _, _ = bridge()
    body = event["Records"][0]["body"]
    boto3.client("sqs", region_name=REGION).send_message(
        QueueUrl=aws.queues[QUEUE].url,
        MessageBody=body,
        MessageGroupId="redriven",
        MessageDeduplicationId="redrive-1",
    )

    error = _run(aws, bridge)

    assert error is None
    assert len(standin.conversations()) == 1
