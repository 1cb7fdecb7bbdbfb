"""Lambda's documented SQS event-source rules, applied to a handler's result.

Used by tests and the local pump so that both judge a batch handler exactly as Lambda
would, with and without ReportBatchItemFailures on the event source mapping.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any


def to_lambda_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """A Lambda SQS record built from a ReceiveMessage result."""
    attributes = dict(message.get("Attributes") or {})
    attributes.setdefault("ApproximateReceiveCount", "1")
    attributes.setdefault("SentTimestamp", str(int(time.time() * 1000)))
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": attributes,
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "dataType": value.get("DataType", "String"),
                "stringListValues": [],
                "binaryListValues": [],
            }
            for name, value in (message.get("MessageAttributes") or {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def records_to_delete(
    records: Sequence[dict[str, Any]],
    result: Any = None,
    error: BaseException | None = None,
    *,
    report_batch_item_failures: bool,
) -> list[dict[str, Any]]:
    """The records Lambda deletes after the handler returned ``result`` or raised ``error``."""
    if error is not None:
        return []
    if not report_batch_item_failures:
        return list(records)
    if result is None or result == {}:
        return list(records)
    if not isinstance(result, dict):
        return []
    failures = result.get("batchItemFailures")
    if failures is None:
        return list(records)
    if not isinstance(failures, list):
        return []
    ids = {r["messageId"] for r in records}
    failed: set[str] = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not identifier or identifier not in ids:
            return []  # Lambda treats the whole batch as failed
        failed.add(identifier)
    return [r for r in records if r["messageId"] not in failed]


def apply(
    sqs: Any,
    queue_url: str,
    records: Sequence[dict[str, Any]],
    result: Any = None,
    error: BaseException | None = None,
    *,
    report_batch_item_failures: bool,
) -> list[str]:
    """Delete what Lambda would delete; return the deleted message ids."""
    doomed = records_to_delete(
        records, result, error, report_batch_item_failures=report_batch_item_failures
    )
    for record in doomed:
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=record["receiptHandle"])
    return [r["messageId"] for r in doomed]
