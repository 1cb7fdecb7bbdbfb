"""Runs a record handler over an SQS batch so that nothing is lost, whatever the deployment.

Written here rather than with Powertools' batch processors, which report failures only by
returning ``batchItemFailures``. Chalice cannot set ReportBatchItemFailures on an event
source mapping, and without that flag Lambda deletes every message of a batch whose handler
returned normally, so a returned failure list would lose the failed messages. The rule here
is safe with the flag and without it:

* every record succeeded or was dead-lettered: return normally (Lambda deletes the batch);
* anything is left to retry: delete the finished records ourselves, then raise
  ``BatchIncomplete`` so Lambda makes the rest visible again (a raised error is a whole-batch
  failure under both settings, and the finished ones are already gone).

FIFO: after a transient failure in a message group, the later records of that group in
the batch are not attempted, so a mailbox's order holds; other groups go on. A permanent or
poison failure is sent to the queue's own DLQ at once (same group id) with its reason in
message attributes, and the group goes on: holding later messages back would not restore
an order that the dead-lettered message has already left.

Every dead letter carries its reason. The runner counts a record's own failed attempts (one
UpdateItem on ``ATTEMPTS#<message id>`` per transient failure; records held back behind
their group or by the time guard are not attempted and not counted) and dead-letters the
record itself, as ``exhausted``, once it has failed ``MAILROOM_MAX_ATTEMPTS`` times. The
queue's maxReceiveCount is only a backstop well above that (see infra/template.yaml), for
crash loops: a DLQ message without ``mailroom_reason`` was moved by SQS, not by us.

Batched side effects (one Postmark call for the whole batch): the record handler returns
``PENDING`` for a record it has prepared, and ``act`` is then called once with every pending
record and returns, per message id, the outcome or the exception, which is settled by the
same rules. A record held back by its group before ``act`` is not part of the call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from chalicelib.platform.aws import aws_client
from chalicelib.platform.errors import counts_as_attempt, error_class, is_transient, reason_of
from chalicelib.platform.logging import log_event, log_outcome
from chalicelib.platform.settings import get_settings

# Stop starting new records when the invocation has less than this left, so a slow batch
# ends with a clean partial result instead of a timeout.
TIME_GUARD_MS = 5_000
# SQS allows 10 message attributes; ours come first, the original ones fill what is left.
MAX_MESSAGE_ATTRIBUTES = 10
DLQ_ATTRIBUTE_PREFIX = "mailroom_"


class BatchIncomplete(Exception):
    """Some records are left for SQS to redeliver; the finished ones were deleted."""

    def __init__(self, remaining: list[str]) -> None:
        super().__init__(f"{len(remaining)} record(s) left for redelivery")
        self.remaining = remaining


@dataclass(frozen=True)
class SqsRecord:
    """One record of a Lambda SQS event, parsed once."""

    message_id: str
    receipt_handle: str
    body: str
    event_source_arn: str
    attributes: Mapping[str, str]
    message_attributes: Mapping[str, Any]

    @classmethod
    def from_lambda(cls, raw: Mapping[str, Any]) -> SqsRecord:
        return cls(
            message_id=str(raw.get("messageId", "")),
            receipt_handle=str(raw.get("receiptHandle", "")),
            body=str(raw.get("body", "")),
            event_source_arn=str(raw.get("eventSourceARN", "")),
            attributes=dict(raw.get("attributes") or {}),
            message_attributes=dict(raw.get("messageAttributes") or {}),
        )

    @property
    def group_id(self) -> str | None:
        return self.attributes.get("MessageGroupId")

    @property
    def receive_count(self) -> int:
        try:
            return int(self.attributes.get("ApproximateReceiveCount", "1"))
        except ValueError:
            return 1

    @property
    def first_seen(self) -> str:
        raw = self.attributes.get("ApproximateFirstReceiveTimestamp") or self.attributes.get(
            "SentTimestamp"
        )
        try:
            millis = int(raw) if raw else int(time.time() * 1000)
        except ValueError:
            millis = int(time.time() * 1000)
        return datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="seconds")


@dataclass
class LogContext:
    """What a handler learns about its record, for the one outcome line the batch logs."""

    message_id: str | None = None
    mailbox_id: str | None = None
    correlation_id: str | None = None


RecordHandler = Callable[[SqsRecord, LogContext], str | None]
# What ``act`` returns per pending record: its outcome, or the error that settles it.
ActResult = dict[str, str | BaseException]
BatchAction = Callable[[list[SqsRecord]], ActResult]
# A record handler's answer for "prepared; the batch action will finish it".
PENDING = "pending"


@dataclass
class BatchResult:
    """Per-record outcome, in batch order, and the ids left for redelivery."""

    outcomes: dict[str, str] = field(default_factory=dict)
    remaining: list[str] = field(default_factory=list)


def process_batch(
    event: Mapping[str, Any],
    handler: RecordHandler,
    *,
    event_type: str,
    remaining_time_ms: Callable[[], int] | None = None,
    act: BatchAction | None = None,
) -> dict[str, list[dict[str, str]]]:
    """Run ``handler`` over ``event``'s records; return Lambda's response or raise."""
    records = [SqsRecord.from_lambda(raw) for raw in event.get("Records") or []]
    result = run_records(
        records, handler, event_type=event_type, remaining_time_ms=remaining_time_ms, act=act
    )
    if result.remaining:
        finished = [r for r in records if r.message_id not in set(result.remaining)]
        _delete_finished(finished)
        raise BatchIncomplete(result.remaining)
    return {"batchItemFailures": []}


def run_records(
    records: list[SqsRecord],
    handler: RecordHandler,
    *,
    event_type: str,
    remaining_time_ms: Callable[[], int] | None = None,
    act: BatchAction | None = None,
) -> BatchResult:
    """Apply the per-record and FIFO rules; dead-letter permanent failures."""
    result = BatchResult()
    blocked_groups: set[str] = set()
    pending: list[_Attempt] = []
    out_of_time = False
    for record in records:
        if out_of_time or (record.group_id is not None and record.group_id in blocked_groups):
            result.outcomes[record.message_id] = "not_attempted"
            result.remaining.append(record.message_id)
            continue
        if remaining_time_ms is not None and remaining_time_ms() < TIME_GUARD_MS:
            out_of_time = True
            result.outcomes[record.message_id] = "not_attempted"
            result.remaining.append(record.message_id)
            continue
        attempt = _Attempt(record)
        try:
            answer: str | BaseException = handler(record, attempt.context) or "success"
        except Exception as exc:
            answer = exc
        if answer == PENDING and act is not None:
            pending.append(attempt)
            continue
        outcome = _settle(attempt, answer, event_type)
        result.outcomes[record.message_id] = outcome
        if outcome == "retry":
            result.remaining.append(record.message_id)
            if record.group_id is not None:
                blocked_groups.add(record.group_id)
    if pending and act is not None:
        answers = _act(act, [a.record for a in pending])
        for attempt in pending:
            outcome = _settle(attempt, answers[attempt.record.message_id], event_type)
            result.outcomes[attempt.record.message_id] = outcome
            if outcome == "retry":
                result.remaining.append(attempt.record.message_id)
    result.remaining.sort(key=[r.message_id for r in records].index)
    return result


@dataclass
class _Attempt:
    record: SqsRecord
    context: LogContext = field(default_factory=LogContext)
    started: float = field(default_factory=time.perf_counter)


def _act(act: BatchAction, records: list[SqsRecord]) -> ActResult:
    """``act``'s answers, with any record it did not answer for (or a crash) left to retry."""
    try:
        answers = act(records)
    except Exception as exc:
        return {r.message_id: exc for r in records}
    missing = RuntimeError("batch action gave no answer for the record")
    return {r.message_id: answers.get(r.message_id, missing) for r in records}


def _settle(attempt: _Attempt, answer: str | BaseException, event_type: str) -> str:
    """The record's final outcome: dead-letter a permanent or exhausted failure, log it."""
    record = attempt.record
    err = answer if isinstance(answer, BaseException) else None
    outcome = answer if isinstance(answer, str) else "retry"
    attempts = record.receive_count
    disposition: str | None = None
    if err is not None and not is_transient(err):
        disposition = "poison" if getattr(err, "poison", False) else "permanent"
    elif err is not None and counts_as_attempt(err):
        attempts = count_failed_attempt(record)
        if attempts >= get_settings().max_attempts:
            disposition = "exhausted"
    if err is not None and disposition is not None:
        try:
            dead_letter(record, err, attempts=attempts, disposition=disposition)
            outcome = "dead_lettered"
        except Exception as dlq_err:
            # The DLQ refused the message: keep it in the source queue instead.
            log_event(
                "dead-letter send failed",
                event_type=event_type,
                error_class=error_class(dlq_err),
                message_id_hash=None,
            )
            outcome = "retry"
    context = attempt.context
    log_outcome(
        event_type,
        message_id=context.message_id or record.message_id,
        outcome=outcome,
        duration_ms=(time.perf_counter() - attempt.started) * 1000,
        mailbox_id=context.mailbox_id,
        correlation_id=context.correlation_id,
        error_class=error_class(err) if err is not None else None,
        reason=reason_of(err) if err is not None else None,
        attempt=attempts,
        disposition=disposition if outcome == "dead_lettered" else None,
    )
    return outcome


def count_failed_attempt(record: SqsRecord) -> int:
    """Add one failed attempt to ``record``'s count and return it.

    Keyed on the SQS message id: a redriven copy is a new message and starts again at one.
    If the count cannot be written, SQS's receive count stands in (it only over-counts).
    """
    settings = get_settings()
    now = int(time.time())
    try:
        response = aws_client("dynamodb").update_item(
            TableName=settings.state_table,
            Key={"PK": {"S": f"ATTEMPTS#{record.message_id}"}, "SK": {"S": "v1"}},
            UpdateExpression="ADD attempts :one SET expires_at = :expires",
            ExpressionAttributeValues={
                ":one": {"N": "1"},
                ":expires": {"N": str(now + settings.idempotency_ttl_days * 86_400)},
            },
            ReturnValues="UPDATED_NEW",
        )
        return int(response["Attributes"]["attempts"]["N"])
    except Exception as err:
        log_event("attempt count not written", error_class=error_class(err))
        return record.receive_count


def dead_letter(
    record: SqsRecord,
    err: BaseException,
    *,
    attempts: int | None = None,
    disposition: str = "permanent",
) -> None:
    """Send ``record`` to its queue's DLQ with the reason, keeping its FIFO group."""
    sqs = aws_client("sqs")
    dlq_url = dead_letter_queue_url(record.event_source_arn)
    params: dict[str, Any] = {
        "QueueUrl": dlq_url,
        "MessageBody": record.body,
        "MessageAttributes": dlq_attributes(
            record, err, attempts=attempts or record.receive_count, disposition=disposition
        ),
    }
    if dlq_url.endswith(".fifo"):
        params["MessageGroupId"] = record.group_id or "ungrouped"
        params["MessageDeduplicationId"] = record.message_id
    sqs.send_message(**params)


def dlq_attributes(
    record: SqsRecord, err: BaseException, *, attempts: int, disposition: str
) -> dict[str, dict[str, str]]:
    """Reason attributes first, then as many of the record's own attributes as fit."""
    ours = {
        "error_class": error_class(err),
        "reason": reason_of(err) or "unknown",
        "attempts": str(attempts),
        "first_seen": record.first_seen,
        "disposition": disposition,
    }
    attributes = {
        f"{DLQ_ATTRIBUTE_PREFIX}{k}": {"DataType": "String", "StringValue": v}
        for k, v in ours.items()
    }
    for name, value in record.message_attributes.items():
        if len(attributes) >= MAX_MESSAGE_ATTRIBUTES:
            break
        data_type = value.get("dataType") or value.get("DataType")
        string_value = value.get("stringValue") or value.get("StringValue")
        if data_type and string_value is not None and not name.startswith(DLQ_ATTRIBUTE_PREFIX):
            attributes[name] = {"DataType": data_type, "StringValue": string_value}
    return attributes


def _delete_finished(records: list[SqsRecord]) -> None:
    if not records:
        return
    sqs = aws_client("sqs")
    queue_url = queue_url_for_arn(records[0].event_source_arn)
    for start in range(0, len(records), 10):
        chunk = records[start : start + 10]
        response = sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": r.receipt_handle} for i, r in enumerate(chunk)
            ],
        )
        if response.get("Failed"):
            # Those come back; idempotency turns the redelivery into a duplicate, not a resend.
            log_event("delete of finished records failed", count=len(response["Failed"]))


@lru_cache(maxsize=32)
def queue_url_for_arn(arn: str) -> str:
    """URL of the queue named by an SQS ARN (cached per container)."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        raise ValueError(f"not an SQS queue ARN: {arn!r}")
    response = aws_client("sqs").get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])
    return str(response["QueueUrl"])


@lru_cache(maxsize=32)
def dead_letter_queue_url(source_arn: str) -> str:
    """URL of the DLQ named in the source queue's own redrive policy (cached per container)."""
    import json

    attributes = aws_client("sqs").get_queue_attributes(
        QueueUrl=queue_url_for_arn(source_arn), AttributeNames=["RedrivePolicy"]
    )["Attributes"]
    policy = json.loads(attributes["RedrivePolicy"])
    return queue_url_for_arn(policy["deadLetterTargetArn"])
