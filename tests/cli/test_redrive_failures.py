"""``mailroom dlq redrive`` when SQS refuses some entries: each entry's fate is reported, what
SQS accepted leaves the DLQ, and a group stops at its first failure."""

from __future__ import annotations

import json
from typing import Any

import boto3
import botocore.handlers
import pytest

from tests.cli.conftest import Invoke, dead_letter, messages
from tests.conftest import REGION, Stage

# The smallest MaximumMessageSize SQS allows; the oversized letter fits the DLQ, not this.
SMALL_LIMIT = 1024


def business_ids(found: list[dict[str, Any]]) -> list[str]:
    return [json.loads(json.loads(m["Body"])["Message"])["MessageID"] for m in found]


def fates(result_stdout: str) -> dict[str, tuple[str, str | None]]:
    [row] = json.loads(result_stdout)
    return {entry["id"]: (entry["fate"], entry["code"]) for entry in row["entries"]}


def test_an_oversized_letter_stops_its_group_and_every_other_letter_moves(
    aws: Stage, mailroom: Invoke
) -> None:
    source = aws.queues["inbound-bridge"]
    boto3.client("sqs", region_name=REGION).set_queue_attributes(
        QueueUrl=source.url, Attributes={"MaximumMessageSize": str(SMALL_LIMIT)}
    )
    first = dead_letter(aws, payload={"MessageID": "pm-a1"}, group="a")
    big = dead_letter(aws, payload={"MessageID": "pm-a2", "TextBody": "x" * 2000}, group="a")
    behind = dead_letter(aws, payload={"MessageID": "pm-a3"}, group="a")
    other = dead_letter(aws, payload={"MessageID": "pm-b1"}, group="b")

    result = mailroom("dlq", "redrive", "inbound", "--rate", "100", json_output=True)

    assert result.exit_code != 0  # a letter left behind is a finding
    assert fates(result.stdout) == {
        first: ("moved", None),
        big: ("failed", "InvalidParameterValue"),
        behind: ("skipped", None),
        other: ("moved", None),
    }
    assert business_ids(messages(aws, source.url)) == ["pm-a1", "pm-b1"]
    assert business_ids(messages(aws, source.dlq_url)) == ["pm-a2", "pm-a3"]


def test_the_human_report_names_each_letter_left_behind_and_why(
    aws: Stage, mailroom: Invoke
) -> None:
    boto3.client("sqs", region_name=REGION).set_queue_attributes(
        QueueUrl=aws.queues["inbound-bridge"].url,
        Attributes={"MaximumMessageSize": str(SMALL_LIMIT)},
    )
    big = dead_letter(aws, payload={"MessageID": "pm-big", "TextBody": "x" * 2000}, group="a")
    behind = dead_letter(aws, payload={"MessageID": "pm-behind"}, group="a")

    result = mailroom("dlq", "redrive", "inbound")

    assert result.exit_code != 0
    assert f"{big} failed (InvalidParameterValue:" in result.output
    assert f"{behind} skipped (an earlier message of group a failed)" in result.output


@pytest.fixture
def refuse_marked_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    """SQS refuses, inside an accepted SendMessageBatch, each entry whose body holds
    ``refuse-me``: the entry asks for a delay over SQS's 900-second maximum, which SQS
    answers per entry (the embedded AWS fails no entry of a batch for any other reason)."""

    def add_delay(params: dict[str, Any], **_: Any) -> None:
        for entry in params.get("Entries", []):
            if "refuse-me" in entry.get("MessageBody", ""):
                entry["DelaySeconds"] = 901

    # Every botocore session registers these when it is made, the CLI's among them.
    monkeypatch.setattr(
        botocore.handlers,
        "BUILTIN_HANDLERS",
        [
            *botocore.handlers.BUILTIN_HANDLERS,
            ("before-parameter-build.sqs.SendMessageBatch", add_delay),
        ],
    )


def test_letters_sqs_accepted_after_a_refused_entry_leave_the_dlq(
    aws: Stage, mailroom: Invoke, refuse_marked_entries: None
) -> None:
    source = aws.queues["gmail-forwarder"]
    sqs = boto3.client("sqs", region_name=REGION)
    ids = []
    for name in ("before", "refuse-me", "after-1", "after-2"):
        ids.append(sqs.send_message(QueueUrl=source.dlq_url, MessageBody=name)["MessageId"])

    result = mailroom("dlq", "redrive", "gmail", "--rate", "100", json_output=True)

    assert result.exit_code != 0
    reported = fates(result.stdout)
    assert reported[ids[1]] == ("failed", "InvalidParameterValue")
    # A standard queue keeps no group order: what SQS accepted has moved, nothing is stranded.
    assert {reported[i] for i in (ids[0], ids[2], ids[3])} == {("moved", None)}
    assert sorted(m["Body"] for m in messages(aws, source.url)) == [
        "after-1",
        "after-2",
        "before",
    ]
    assert [m["Body"] for m in messages(aws, source.dlq_url)] == ["refuse-me"]
