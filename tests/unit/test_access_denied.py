"""AWS refusing a call for want of permission is ``AccessDenied``: permanent, dead-lettered at
once with the action and resource, seen by the permission alarm, and "fix, then redrive"."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from chalicelib.handlers.http import _failure_reply
from chalicelib.platform.batch import LogContext, SqsRecord, process_batch
from chalicelib.platform.errors import (
    TransientError,
    access_denied,
    error_class,
    is_transient,
    reason_of,
)
from mailroom_cli.deadletters import DeadLetter, parse, suggest
from tests.conftest import REGION, Stage

DENIED_S3 = (
    "User: arn:aws:sts::123456789012:assumed-role/mailroom-prod-inbound_bridge/x is not "
    "authorized to perform: s3:GetObject on resource: "
    "arn:aws:s3:::mailroom-prod-mail-1/raw/abc because no identity-based policy allows the "
    "s3:GetObject action"
)


def _client_error(code: str, message: str, operation: str = "GetObject") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


def _wrapped(err: BaseException) -> TransientError:
    try:
        try:
            raise err
        except ClientError as inner:
            raise TransientError("cannot read the raw message from S3") from inner
    except TransientError as outer:
        return outer


@pytest.mark.parametrize("code", ["AccessDenied", "AccessDeniedException", "AuthorizationError"])
def test_a_refused_aws_call_is_permanent_and_names_action_and_resource(code: str) -> None:
    err = _wrapped(_client_error(code, DENIED_S3))

    assert not is_transient(err)
    assert error_class(err) == "AccessDenied"
    assert reason_of(err) == (
        "AccessDenied: s3:GetObject on arn:aws:s3:::mailroom-prod-mail-1/raw/abc"
    )


def test_a_refusal_that_names_no_action_names_the_operation() -> None:
    denied = access_denied(_client_error("AccessDenied", "Access Denied", "PutObject"))

    assert denied is not None
    assert denied.reason == "AccessDenied: PutObject on a resource AWS did not name"


def test_other_aws_errors_stay_transient() -> None:
    err = _wrapped(_client_error("ThrottlingException", "slow down"))

    assert access_denied(err) is None
    assert is_transient(err)
    assert error_class(err) == "TransientError"


def test_the_webhook_answers_503_with_the_refused_action_in_its_log_reason() -> None:
    reply = _failure_reply(_wrapped(_client_error("AccessDenied", DENIED_S3)))

    assert reply.status == 503
    assert reply.reason.startswith("AccessDenied: s3:GetObject on arn:aws:s3:::")


def test_a_refused_call_is_dead_lettered_at_the_first_attempt_with_its_reason(
    aws: Stage,
) -> None:
    import boto3

    sqs = boto3.client("sqs", region_name=REGION)
    queue = aws.queues["inbound-bridge"]
    sqs.send_message(
        QueueUrl=queue.url,
        MessageBody=json.dumps({"name": "m1"}),
        MessageGroupId="A",
        MessageDeduplicationId="m1",
    )

    def handler(record: SqsRecord, ctx: LogContext) -> None:
        raise _wrapped(_client_error("AccessDenied", DENIED_S3))

    _, result, error = aws.run_lambda(
        "inbound-bridge",
        lambda e: process_batch(e, handler, event_type="test"),
        report_batch_item_failures=True,
    )

    assert error is None
    assert result == {"batchItemFailures": []}
    [dead] = aws.drain(queue.dlq_url)
    attributes = {k: v["StringValue"] for k, v in dead["MessageAttributes"].items()}
    assert attributes["mailroom_error_class"] == "AccessDenied"
    assert attributes["mailroom_disposition"] == "permanent"
    assert attributes["mailroom_attempts"] == "1"
    assert (
        "s3:GetObject on arn:aws:s3:::mailroom-prod-mail-1/raw/abc" in attributes["mailroom_reason"]
    )


def _letter(error: str, reason: str, disposition: str) -> DeadLetter:
    message: dict[str, Any] = {
        "MessageId": "m-1",
        "ReceiptHandle": "r-1",
        "Body": "{}",
        "Attributes": {"SentTimestamp": "0"},
        "MessageAttributes": {
            f"mailroom_{name}": {"DataType": "String", "StringValue": value}
            for name, value in {
                "error_class": error,
                "reason": reason,
                "disposition": disposition,
            }.items()
        },
    }
    return parse(message)


@pytest.mark.parametrize(
    ("error", "reason", "disposition"),
    [
        ("AccessDenied", "AccessDenied: sqs:SendMessage on arn:aws:sqs:x", "permanent"),
        # Dead-lettered before AccessDenied was its own class: retried to exhaustion.
        ("ClientError", "unexpected ClientError (AccessDeniedException)", "exhausted"),
    ],
)
def test_dlq_analyze_says_fix_then_redrive_for_a_missing_permission(
    error: str, reason: str, disposition: str
) -> None:
    assert suggest(_letter(error, reason, disposition)).action == "fix-then-redrive"
