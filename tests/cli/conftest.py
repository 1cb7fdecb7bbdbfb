"""The CLI against a moto stage: a runner, dead letters as the batch runner writes them, and
the Lambda functions and event source mappings Chalice would create."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from click.testing import CliRunner, Result

from mailroom_cli.main import cli
from mailroom_cli.pipelines import PIPELINES
from tests.conftest import REGION, STAGE, Stage

Invoke = Callable[..., Result]


@pytest.fixture
def mailroom(aws: Stage) -> Invoke:
    """``mailroom --stage test <args>`` through CliRunner, against the moto stage."""
    runner = CliRunner()

    def invoke(*args: str, json_output: bool = False) -> Result:
        prefix = ["--stage", STAGE, *(["--json"] if json_output else [])]
        return runner.invoke(cli, [*prefix, *args], catch_exceptions=False)

    return invoke


def sns_envelope(message: str, topic: str = "inbound") -> str:
    """The body SNS delivers to a queue when raw message delivery is off."""
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": f"arn:aws:sns:{REGION}:123456789012:mailroom-{STAGE}-{topic}.fifo",
            "Message": message,
            "Timestamp": "2026-11-22T10:00:00.000Z",
        }
    )


def dead_letter(
    aws: Stage,
    pipeline: str = "inbound-bridge",
    *,
    payload: dict[str, Any] | str | None = None,
    group: str = "g1",
    error_class: str | None = "ProviderTransientError",
    reason: str | None = "freescout answered 503",
    disposition: str = "exhausted",
    extra: dict[str, str] | None = None,
    first_seen: str = "2026-11-22T10:00:00+00:00",
) -> str:
    """Put one message in ``pipeline``'s DLQ as the batch runner would; its message id."""
    if payload is None:
        payload = {"MessageID": f"pm-{uuid.uuid4()}", "To": "help@example.com"}
    message = payload if isinstance(payload, str) else json.dumps(payload)
    attributes = {
        name: {"DataType": "String", "StringValue": value} for name, value in (extra or {}).items()
    }
    if reason is not None:
        for name, value in {
            "error_class": error_class or "-",
            "reason": reason,
            "attempts": "5",
            "first_seen": first_seen,
            "disposition": disposition,
        }.items():
            attributes[f"mailroom_{name}"] = {"DataType": "String", "StringValue": value}
    params: dict[str, Any] = {
        "QueueUrl": aws.queues[pipeline].dlq_url,
        "MessageBody": sns_envelope(message),
        "MessageGroupId": group,
        "MessageDeduplicationId": str(uuid.uuid4()),
    }
    if attributes:
        params["MessageAttributes"] = attributes
    return str(boto3.client("sqs", region_name=REGION).send_message(**params)["MessageId"])


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return None\n")
    return buffer.getvalue()


@pytest.fixture
def functions(aws: Stage) -> dict[str, str]:
    """The queue handlers as Chalice deploys them, each with an SQS event source mapping set
    as infra/deploy.py leaves it (ReportBatchItemFailures, MaximumConcurrency); name → UUID."""
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(
        RoleName="mailroom-test",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    client = boto3.client("lambda", region_name=REGION)
    found = {}
    for pipeline in PIPELINES:
        queue, handler = pipeline.queue, pipeline.handler
        name = f"mailroom-{STAGE}-{handler}"
        client.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Role=role,
            Handler="app.handler",
            Code={"ZipFile": _zip()},
        )
        client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=5)
        mapping = client.create_event_source_mapping(
            EventSourceArn=aws.queues[queue].arn,
            FunctionName=name,
            BatchSize=10,
            FunctionResponseTypes=["ReportBatchItemFailures"],
            ScalingConfig={"MaximumConcurrency": 2},
        )
        found[handler] = mapping["UUID"]
    return found


def messages(aws: Stage, url: str) -> list[dict[str, Any]]:
    """Every visible message of ``url`` (received, so left in flight)."""
    return aws.drain(url)


def attributes_of(message: dict[str, Any]) -> dict[str, str]:
    return {k: v["StringValue"] for k, v in (message.get("MessageAttributes") or {}).items()}
