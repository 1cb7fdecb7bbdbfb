"""Pure parts of the CLI: dead-letter parsing, reason normalisation, disposition, pacing."""

from __future__ import annotations

import json

import pytest

from chalicelib.handlers.gmail_forwarder import route_label_missing
from chalicelib.providers.gmail.client import GmailLabelNotFound
from mailroom_cli.deadletters import BusinessId, business_ids, normalise_reason, parse, suggest
from mailroom_cli.queues import Pacer, redriven_attributes
from tests.cli.conftest import sns_envelope


def _message(body: str, **attributes: str) -> dict[str, object]:
    return {
        "MessageId": "m-1",
        "ReceiptHandle": "r-1",
        "Body": body,
        "Attributes": {"SentTimestamp": "1763800000000", "MessageGroupId": "g"},
        "MessageAttributes": {
            k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
        },
    }


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"MessageID": "pm-1"}, [BusinessId("postmark", "pm-1")]),
        ({"correlation_id": "c-1", "To": "a@b.c"}, [BusinessId("correlation", "c-1")]),
        ({"mail": {"messageId": "ses-1"}}, [BusinessId("ses", "ses-1")]),
        (
            {"mail": {"messageId": "ses-2", "commonHeaders": {"messageId": "<m@x>"}}},
            [BusinessId("ses", "ses-2"), BusinessId("rfc", "<m@x>")],
        ),
        (
            {"MessageID": "pm-2", "Headers": [{"Name": "Message-ID", "Value": "<x@y>"}]},
            [BusinessId("postmark", "pm-2"), BusinessId("rfc", "<x@y>")],
        ),
        (["not", "an", "object"], []),
    ],
)
def test_business_ids_come_out_of_the_sns_envelope(
    payload: object, expected: list[BusinessId]
) -> None:
    assert list(business_ids(sns_envelope(json.dumps(payload)))) == expected


def test_business_ids_of_a_raw_body_and_of_garbage() -> None:
    assert business_ids(json.dumps({"MessageID": "pm-raw"})) == (BusinessId("postmark", "pm-raw"),)
    assert business_ids("\x00 not json") == ()


def test_reasons_that_differ_only_in_ids_and_numbers_group_together() -> None:
    one = normalise_reason("freescout answered 503 for 'ann@x.org' after 1200 ms")
    two = normalise_reason("freescout answered 502 for 'bob@y.org' after 80 ms")

    assert one == two == "freescout answered <n> for <str> after <n> ms"


@pytest.mark.parametrize(
    ("attributes", "action"),
    [
        ({}, "investigate"),
        ({"mailroom_reason": "x", "mailroom_disposition": "exhausted"}, "redrive"),
        ({"mailroom_reason": "bad", "mailroom_error_class": "PoisonMessageError"}, "discard"),
        (
            {"mailroom_reason": "sender failed DMARC: spoofed", "mailroom_error_class": "X"},
            "quarantine",
        ),
        (
            {"mailroom_reason": "401", "mailroom_error_class": "ProviderAuthError"},
            "fix-then-redrive",
        ),
        (
            {
                "mailroom_reason": "no routing rule matches the recipient",
                "mailroom_error_class": "PermanentError",
            },
            "fix-then-redrive",
        ),
        ({"mailroom_reason": "weird", "mailroom_error_class": "PermanentError"}, "investigate"),
        (
            {
                "mailroom_reason": "freescout: request rejected: Error occurred; subject: This "
                "value should not be blank. status=400",
                "mailroom_error_class": "ProviderPermanentError",
                "mailroom_disposition": "permanent",
            },
            "discard",
        ),
        (
            {
                "mailroom_reason": "freescout: request rejected: Error occurred; mailboxId: "
                "Mailbox not found status=400",
                "mailroom_error_class": "ProviderPermanentError",
                "mailroom_disposition": "permanent",
            },
            "fix-then-redrive",
        ),
        (
            {
                "mailroom_reason": "Gmail authorization for this mailbox revoked or expired; "
                "re-authorize",
                "mailroom_error_class": "GmailAuthRevoked",
            },
            "fix-then-redrive",
        ),
        (
            {
                "mailroom_reason": str(
                    route_label_missing(
                        GmailLabelNotFound(
                            "x", label="Label_99", status_code=400, error_code="invalidArgument"
                        ),
                        "team@gmail.test",
                    )
                ),
                "mailroom_error_class": "GmailLabelNotFound",
                "mailroom_disposition": "permanent",
            },
            "fix-then-redrive",
        ),
    ],
)
def test_suggested_disposition_follows_the_table(attributes: dict[str, str], action: str) -> None:
    assert suggest(parse(_message("{}", **attributes))).action == action


def test_completed_key_means_discard_as_duplicate() -> None:
    letter = parse(_message("{}", mailroom_reason="x", mailroom_disposition="exhausted"))

    assert suggest(letter, completed=True).action == "discard"


def test_redriven_attributes_drop_reasons_keep_the_rest_and_count_redrives() -> None:
    letter = parse(
        _message(
            "{}",
            mailroom_reason="x",
            mailroom_error_class="E",
            origin="api",
            mailroom_redrive_count="2",
        )
    )

    assert redriven_attributes(letter) == {
        "origin": {"DataType": "String", "StringValue": "api"},
        "mailroom_redrive_count": {"DataType": "Number", "StringValue": "3"},
    }


class _VirtualTime:
    def __init__(self, per_send: float) -> None:
        self.now = 0.0
        self.per_send = per_send

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize(("rate", "per_send"), [(5.0, 0.01), (50.0, 0.001), (20.0, 0.0)])
def test_pacer_achieves_the_requested_rate(rate: float, per_send: float) -> None:
    time = _VirtualTime(per_send)
    pacer = Pacer(rate, clock=time.clock, sleep=time.sleep)

    for _ in range(200):
        pacer.wait()
        time.now += time.per_send  # the send itself
        pacer.done()

    achieved = pacer.finish()
    assert achieved is not None
    assert abs(achieved - rate) / rate < 0.01


def test_pacer_cannot_beat_a_slow_queue() -> None:
    time = _VirtualTime(per_send=0.5)
    pacer = Pacer(10.0, clock=time.clock, sleep=time.sleep)

    for _ in range(10):
        pacer.wait()
        time.now += time.per_send
        pacer.done()

    assert pacer.finish() == pytest.approx(2.0)
