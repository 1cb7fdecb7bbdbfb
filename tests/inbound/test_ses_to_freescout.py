"""SES mail routed to FreeScout goes through the bridge like Postmark mail, and one email that
arrives by both paths (dual MX, an MX migration) becomes one conversation."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import responses

from chalicelib.handlers import inbound_bridge, router
from tests.conftest import Stage
from tests.inbound.conftest import CONVERSATIONS, basic, created
from tests.ses.conftest import Receive, _forget_queue_urls, mime, receive  # noqa: F401 (fixtures)


def _bridge(aws: Stage) -> BaseException | None:
    _, _, error = aws.run_lambda("inbound-bridge", inbound_bridge.handle_batch)
    aws.make_visible("inbound-bridge")
    return error


def _created(freescout: responses.RequestsMock) -> list[dict[str, Any]]:
    return [
        json.loads(c.request.body)
        for c in freescout.calls
        if c.request.method == "POST" and c.request.url == CONVERSATIONS
    ]


def test_ses_mail_for_a_freescout_route_becomes_a_conversation_from_the_raw_mime(
    aws: Stage,
    receive: Receive,  # noqa: F811 (the SES fixture)
    freescout: responses.RequestsMock,
) -> None:
    aws.put_route("support@example.com", "freescout", "2")
    freescout.add(**created(42))
    receive(mime(body="The printer is on fire."))

    aws.run_lambda("ses-inbound", router.handle_batch)
    error = _bridge(aws)

    assert error is None
    [sent] = _created(freescout)
    assert sent["mailboxId"] == 2
    assert sent["subject"] == "Hello"
    assert sent["customer"]["email"] == "alice@sender.example"
    assert "The printer is on fire." in sent["threads"][0]["text"]


NO_FROM = b"To: support@example.com\r\nSubject: Enclosed\r\n\r\nForwarded without a From.\r\n"


def test_ses_mail_without_a_from_header_is_a_conversation_from_its_envelope_sender(
    aws: Stage,
    receive: Receive,  # noqa: F811 (the SES fixture)
    freescout: responses.RequestsMock,
) -> None:
    aws.put_route("support@example.com", "freescout", "2")
    freescout.add(**created(42))
    receive(NO_FROM, source="bounces@sender.example")

    aws.run_lambda("ses-inbound", router.handle_batch)
    error = _bridge(aws)

    assert error is None
    [sent] = _created(freescout)
    assert sent["customer"]["email"] == "bounces@sender.example"


def test_ses_mail_with_no_sender_at_all_is_dead_lettered_saying_what_is_missing(
    aws: Stage,
    receive: Receive,  # noqa: F811 (the SES fixture)
    freescout: responses.RequestsMock,
) -> None:
    aws.put_route("support@example.com", "freescout", "2")
    receive(NO_FROM, source="")  # the null envelope sender <>, and no From header

    aws.run_lambda("ses-inbound", router.handle_batch)
    _bridge(aws)

    assert _created(freescout) == []
    [dead] = aws.drain(aws.queues["inbound-bridge"].dlq_url)
    reason = dead["MessageAttributes"]["mailroom_reason"]["StringValue"]
    assert reason.startswith("no sender address: no From header and the null envelope sender")


def test_one_message_id_through_postmark_and_ses_is_delivered_once(
    aws: Stage,
    receive: Receive,  # noqa: F811 (the SES fixture)
    post: Any,
    payload: Any,
    freescout: responses.RequestsMock,
) -> None:
    aws.put_route("support@mailroom.test", "freescout", "1")
    freescout.add(**created(42))
    post(payload(), basic())  # Postmark's copy, Message-ID <CAE-first-4711@mail.example.org>
    assert _bridge(aws) is None
    receive(
        mime(message_id="<CAE-first-4711@mail.example.org>", to="support@mailroom.test"),
        recipients=["support@mailroom.test"],
        message_id="<CAE-first-4711@mail.example.org>",
    )

    aws.run_lambda("ses-inbound", router.handle_batch)
    error = _bridge(aws)

    assert error is None
    assert len(_created(freescout)) == 1


def test_a_webhook_payload_dressed_as_a_router_reference_is_parsed_as_postmark_mail(
    aws: Stage, post: Any, payload: Any, freescout: responses.RequestsMock
) -> None:
    aws.put_route("support@mailroom.test", "freescout", "1")
    freescout.add(**created(42))
    forged = {"source": "ses", "bucket": aws.bucket, "key": "raw/someone-elses", **payload()}
    body = json.dumps(forged, separators=(",", ":")).encode()  # as the router writes it
    assert post(body, basic()).status_code == 200

    error = _bridge(aws)

    assert error is None
    [sent] = _created(freescout)
    assert sent["customer"]["email"] == "ada.customer@example.org"  # the Postmark payload's


def _event(name: str) -> bytes:
    return (Path(__file__).resolve().parents[1] / "events" / name).read_bytes()


def test_malformed_mime_reaches_freescout_with_a_note_and_the_original_attached(
    aws: Stage,
    receive: Receive,  # noqa: F811 (the SES fixture)
    freescout: responses.RequestsMock,
) -> None:
    aws.put_route("support@example.com", "freescout", "2")
    freescout.add(**created(42))
    raw = _event("mime_bad_base64.eml")
    receive(raw)

    aws.run_lambda("ses-inbound", router.handle_batch)
    error = _bridge(aws)

    assert error is None
    [sent] = _created(freescout)
    [thread] = sent["threads"]
    assert "The printer is on fire." in thread["text"]
    assert "could not be decoded" in thread["text"]
    assert "report.pdf" in thread["text"]
    [original] = thread["attachments"]
    assert (original["fileName"], original["mimeType"]) == ("original.eml", "message/rfc822")
    assert base64.b64decode(original["data"]) == raw


def test_mime_with_nothing_readable_is_dead_lettered_with_the_reason(
    aws: Stage,
    receive: Receive,  # noqa: F811 (the SES fixture)
    freescout: responses.RequestsMock,
) -> None:
    aws.put_route("support@example.com", "freescout", "2")
    receive(_event("mime_unreadable.eml"))

    aws.run_lambda("ses-inbound", router.handle_batch)
    error = _bridge(aws)

    assert error is None
    assert _created(freescout) == []
    [dead] = aws.drain(aws.queues["inbound-bridge"].dlq_url)
    reason = dead["MessageAttributes"]["mailroom_reason"]["StringValue"]
    assert "nothing readable" in reason
    assert "base64 could not be decoded" in reason
