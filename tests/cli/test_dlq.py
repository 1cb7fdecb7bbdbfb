"""``mailroom dlq`` against moto: status, peek, analyze, redrive, discard and quarantine."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import boto3

from chalicelib.mail.inbound_email import delivery_key
from chalicelib.providers.postmark.inbound import parse_postmark_inbound, to_inbound_email
from tests.cli.conftest import Invoke, attributes_of, dead_letter, messages, sns_envelope
from tests.conftest import REGION, Stage

EVENTS = Path(__file__).resolve().parents[1] / "events"


def test_status_counts_dead_letters_per_pipeline(aws: Stage, mailroom: Invoke) -> None:
    dead_letter(aws)
    dead_letter(aws, group="g2")

    result = mailroom("dlq", "status", json_output=True)

    assert result.exit_code == 0, result.output
    rows = {r["pipeline"]: r for r in json.loads(result.stdout)}
    assert rows["inbound"]["dlq"] == 2
    assert rows["inbound"]["dlq_oldest_s"] is not None
    assert rows["outbound"]["dlq"] == 0
    assert rows["inbound"]["subscription_dlq"] == 0


def test_peek_shows_reason_and_business_id_and_leaves_messages_visible(
    aws: Stage, mailroom: Invoke
) -> None:
    message_id = dead_letter(aws, payload={"MessageID": "pm-42", "To": "a@example.com"})

    result = mailroom("dlq", "peek", "inbound", json_output=True)

    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert row["message_id"] == message_id
    assert row["business_id"] == "postmark:pm-42"
    assert row["reason"] == "freescout answered 503"
    assert row["group"] == "g1"
    assert "body" not in row
    # Given back at once: the same message can be received again straight away.
    assert [m["MessageId"] for m in messages(aws, aws.queues["inbound-bridge"].dlq_url)] == [
        message_id
    ]


def test_peek_unpacks_a_claim_checked_payload(aws: Stage, mailroom: Invoke) -> None:
    payload = json.dumps({"MessageID": "pm-big", "HtmlBody": "x" * 10})
    digest = hashlib.sha256(payload.encode()).hexdigest()
    boto3.client("s3", region_name=REGION).put_object(
        Bucket=aws.bucket, Key=f"payloads/{digest}.json", Body=payload.encode()
    )
    pointer = {"bucket": aws.bucket, "key": f"payloads/{digest}.json", "sha256": digest}
    dead_letter(aws, payload=json.dumps({"mailroom_claim_check": pointer}))

    result = mailroom("dlq", "peek", "--body", json_output=True)

    [row] = json.loads(result.stdout)
    assert row["business_id"] == "postmark:pm-big"
    assert "mailroom_claim_check" in row["body"]


def test_analyze_groups_by_signature_and_suggests_a_disposition(
    aws: Stage, mailroom: Invoke
) -> None:
    dead_letter(aws, reason="freescout answered 503 after 10012 ms", group="a")
    dead_letter(aws, reason="freescout answered 503 after 9001 ms", group="b")
    dead_letter(
        aws,
        error_class="PoisonMessageError",
        reason="not a Postmark inbound payload: MessageID",
        disposition="poison",
        group="c",
    )
    dead_letter(aws, reason=None, group="d")

    result = mailroom("dlq", "analyze", json_output=True)

    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    by_action = {r["action"]: r for r in rows}
    assert by_action["redrive"]["count"] == 2
    assert by_action["redrive"]["reason"] == "freescout answered <n> after <n> ms"
    assert by_action["discard"]["error_class"] == "PoisonMessageError"
    assert "crash loop" in by_action["investigate"]["why"]


def test_analyze_suggests_discarding_a_dead_letter_whose_key_is_completed(
    aws: Stage, mailroom: Invoke
) -> None:
    payload = json.loads((EVENTS / "postmark_inbound_basic.json").read_text())
    parsed = parse_postmark_inbound(json.dumps(payload))
    key = delivery_key(to_inbound_email(parsed, parsed.recipient), parsed.recipient, "freescout")
    boto3.client("dynamodb", region_name=REGION).put_item(
        TableName=aws.state_table,
        Item={
            "PK": {"S": f"IDEMPOTENCY#{key}"},
            "SK": {"S": "v1"},
            "status": {"S": "COMPLETED"},
            "result": {"M": {"conversation_id": {"S": "7"}}},
        },
    )
    dead_letter(aws, payload=payload)

    rows = json.loads(mailroom("dlq", "analyze", json_output=True).stdout)

    assert [(r["action"], r["why"].split(":")[0]) for r in rows] == [("discard", "duplicate")]


def test_redrive_keeps_group_and_attributes_with_a_fresh_deduplication_id(
    aws: Stage, mailroom: Invoke
) -> None:
    first = dead_letter(aws, group="mailbox-1", extra={"origin": "webhook"})
    second = dead_letter(aws, group="mailbox-1")
    peeked = json.loads(mailroom("dlq", "peek", "--body", json_output=True).stdout)

    result = mailroom("dlq", "redrive", "inbound", "--rate", "100", json_output=True)

    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert row["moved"] == 2
    assert row["ids"] == [first, second]
    assert messages(aws, aws.queues["inbound-bridge"].dlq_url) == []
    moved = messages(aws, aws.queues["inbound-bridge"].url)
    assert [m["Body"] for m in moved] == [p["body"] for p in peeked]
    assert [m["Attributes"]["MessageGroupId"] for m in moved] == ["mailbox-1", "mailbox-1"]
    dedup_ids = {m["Attributes"]["MessageDeduplicationId"] for m in moved}
    assert len(dedup_ids) == 2  # fresh ones: the originals were uuid4 strings with dashes
    assert all(len(d) == 32 and "-" not in d for d in dedup_ids)
    attributes = attributes_of(moved[0])
    assert attributes == {"origin": "webhook", "mailroom_redrive_count": "1"}
    [record] = json.loads(mailroom("audit", "list", json_output=True).stdout)
    assert record["action"] == "dlq.redrive"
    assert record["count"] == 2
    assert record["actor"].startswith("arn:aws:")


def test_redrive_puts_a_group_back_in_the_order_it_first_arrived(
    aws: Stage, mailroom: Invoke
) -> None:
    dead_letter(aws, payload={"MessageID": "pm-later"}, first_seen="2026-11-22T10:00:05+00:00")
    dead_letter(aws, payload={"MessageID": "pm-earlier"}, first_seen="2026-11-22T10:00:01+00:00")

    mailroom("dlq", "redrive")

    moved = messages(aws, aws.queues["inbound-bridge"].url)
    ids = [json.loads(json.loads(m["Body"])["Message"])["MessageID"] for m in moved]
    assert ids == ["pm-earlier", "pm-later"]


def test_redrive_filters_by_error_class_and_reason(aws: Stage, mailroom: Invoke) -> None:
    keep = dead_letter(aws, error_class="PoisonMessageError", reason="bad json", group="a")
    move = dead_letter(aws, reason="freescout answered 503", group="b")

    result = mailroom(
        "dlq",
        "redrive",
        "--error-class",
        "ProviderTransientError",
        "--reason-contains",
        "503",
        json_output=True,
    )

    assert json.loads(result.stdout)[0]["ids"] == [move]
    assert [m["MessageId"] for m in messages(aws, aws.queues["inbound-bridge"].dlq_url)] == [keep]


def test_redrive_by_business_id_and_max(aws: Stage, mailroom: Invoke) -> None:
    dead_letter(aws, payload={"MessageID": "pm-1"}, group="a")
    dead_letter(aws, payload={"MessageID": "pm-2"}, group="b")
    dead_letter(aws, payload={"MessageID": "pm-3"}, group="c")

    by_id = mailroom("dlq", "redrive", "--id", "pm-2", json_output=True)
    by_max = mailroom("dlq", "redrive", "--max", "1", json_output=True)

    assert json.loads(by_id.stdout)[0]["moved"] == 1
    assert json.loads(by_max.stdout)[0]["moved"] == 1
    left = messages(aws, aws.queues["inbound-bridge"].dlq_url)
    assert len(left) == 1


def test_redrive_dry_run_moves_nothing(aws: Stage, mailroom: Invoke) -> None:
    message_id = dead_letter(aws)

    result = mailroom("dlq", "redrive", "--dry-run")

    assert result.exit_code == 0, result.output
    assert f"would move {message_id}" in result.output
    assert len(messages(aws, aws.queues["inbound-bridge"].dlq_url)) == 1
    assert json.loads(mailroom("audit", "list", json_output=True).stdout) == []


def test_redrive_refuses_while_the_pipeline_is_stopped_unless_forced(
    aws: Stage, mailroom: Invoke, functions: dict[str, str]
) -> None:
    dead_letter(aws)
    assert mailroom("stop", "inbound", "--reason", "freescout down").exit_code == 0

    refused = mailroom("dlq", "redrive", "inbound")
    forced = mailroom("dlq", "redrive", "inbound", "--force", json_output=True)

    assert refused.exit_code == 2
    assert "is stopped" in refused.output
    assert json.loads(forced.stdout)[0]["moved"] == 1


def test_discard_keeps_a_copy_and_audits_the_body_hash(aws: Stage, mailroom: Invoke) -> None:
    message_id = dead_letter(aws, payload={"MessageID": "pm-poison"})
    [peeked] = json.loads(mailroom("dlq", "peek", "--body", json_output=True).stdout)
    body = peeked["body"]

    result = mailroom("dlq", "discard", "--id", message_id, "--reason", "poison", json_output=True)

    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert row["body_sha256"] == hashlib.sha256(body.encode()).hexdigest()
    copy = boto3.client("s3", region_name=REGION).get_object(Bucket=aws.bucket, Key=row["kept_at"])
    assert json.loads(copy["Body"].read())["body"] == body
    assert row["kept_at"].startswith("discarded/")
    [record] = json.loads(mailroom("audit", "list", json_output=True).stdout)
    assert record["details"]["body_sha256"] == row["body_sha256"]


def test_quarantine_moves_the_body_to_quarantine_and_deletes_it(
    aws: Stage, mailroom: Invoke
) -> None:
    dead_letter(aws, payload={"MessageID": "pm-spoof"}, reason="unauthenticated sender")

    result = mailroom(
        "dlq", "quarantine", "--id", "pm-spoof", "--reason", "spoofed", json_output=True
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["kept_at"].startswith("quarantine/")
    assert messages(aws, aws.queues["inbound-bridge"].dlq_url) == []


def test_discard_of_an_unknown_id_is_a_finding(aws: Stage, mailroom: Invoke) -> None:
    result = mailroom("dlq", "discard", "--id", "nope", "--reason", "x")

    assert result.exit_code == 1
    assert result.output.strip().endswith("not found in any DLQ: nope")


def test_redrive_from_the_subscription_dlq_once_the_subscription_is_fixed(
    aws: Stage, mailroom: Invoke
) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    sub_dlq = sqs.get_queue_url(QueueName="mailroom-test-inbound-sub-dlq.fifo")["QueueUrl"]
    sqs.send_message(
        QueueUrl=sub_dlq,
        MessageBody=sns_envelope(json.dumps({"MessageID": "pm-topology"})),
        MessageGroupId="g",
        MessageDeduplicationId="d-1",
    )

    peeked = json.loads(mailroom("dlq", "peek", "--subscription", json_output=True).stdout)
    result = mailroom("dlq", "redrive", "inbound", "--subscription", json_output=True)

    assert [p["business_id"] for p in peeked] == ["postmark:pm-topology"]
    assert json.loads(result.stdout)[0]["moved"] == 1
    [moved] = messages(aws, aws.queues["inbound-bridge"].url)
    assert json.loads(json.loads(moved["Body"])["Message"])["MessageID"] == "pm-topology"


def test_redrive_of_many_shows_progress_and_a_summary(aws: Stage, mailroom: Invoke) -> None:
    for n in range(7):
        dead_letter(aws, group=f"g{n}")

    result = mailroom("dlq", "redrive", "inbound", "--rate", "200")

    assert result.exit_code == 0, result.output
    assert "redrive inbound" in result.output  # the progress bar's label
    assert result.output.splitlines()[-1].split()[:3] == ["inbound", "7", "0"]


def test_a_standard_queue_pipeline_is_found_and_redriven_without_a_group(
    aws: Stage, mailroom: Invoke
) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    dlq, source = aws.queues["gmail-forwarder"].dlq_url, aws.queues["gmail-forwarder"].url
    sqs.send_message(
        QueueUrl=dlq,
        MessageBody=json.dumps({"mail": {"messageId": "ses-1"}}),
        MessageAttributes={
            "mailroom_reason": {"DataType": "String", "StringValue": "gmail answered 500"},
            "mailroom_disposition": {"DataType": "String", "StringValue": "exhausted"},
        },
    )

    [row] = json.loads(mailroom("dlq", "peek", "gmail", json_output=True).stdout)
    result = mailroom("dlq", "redrive", "gmail", json_output=True)

    assert row["business_id"] == "ses:ses-1"
    assert json.loads(result.stdout)[0]["moved"] == 1
    [moved] = sqs.receive_message(QueueUrl=source, AttributeNames=["All"])["Messages"]
    assert "MessageGroupId" not in moved["Attributes"]
