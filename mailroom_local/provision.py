"""The stage's resources, created against moto: one definition for tests and the local stack.

Mirrors what the CloudFormation template will hold for the inbound slice: the inbound SNS
FIFO topic, the bridge FIFO queue with its FIFO DLQ (maxReceiveCount 5, 14-day retention),
the SNS→SQS subscription, the routes and state tables, the mail bucket and the secrets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

MAX_RECEIVE_COUNT = 5
DLQ_RETENTION_SECONDS = 1_209_600


@dataclass
class Queue:
    url: str
    arn: str
    dlq_url: str


@dataclass
class Resources:
    stage: str
    topics: dict[str, str] = field(default_factory=dict)
    queues: dict[str, Queue] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return f"mailroom-{self.stage}"

    @property
    def routes_table(self) -> str:
        return f"{self.prefix}-routes"

    @property
    def state_table(self) -> str:
        return f"{self.prefix}-state"

    @property
    def bucket(self) -> str:
        return f"{self.prefix}-mail"


def _table(dynamodb: Any, name: str, *, ttl: bool) -> None:
    dynamodb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "PK", "KeyType": "HASH"},
            {"AttributeName": "SK", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "PK", "AttributeType": "S"},
            {"AttributeName": "SK", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    if ttl:
        dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
        )


def _arn(sqs: Any, url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


def _fifo_queue(sqs: Any, name: str, *, visibility_seconds: int) -> Queue:
    dlq_url = sqs.create_queue(
        QueueName=f"{name}-dlq.fifo",
        Attributes={"FifoQueue": "true", "MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS)},
    )["QueueUrl"]
    policy = {"deadLetterTargetArn": _arn(sqs, dlq_url), "maxReceiveCount": MAX_RECEIVE_COUNT}
    url = sqs.create_queue(
        QueueName=f"{name}.fifo",
        Attributes={
            "FifoQueue": "true",
            "VisibilityTimeout": str(visibility_seconds),
            "RedrivePolicy": json.dumps(policy),
        },
    )["QueueUrl"]
    return Queue(url=url, arn=_arn(sqs, url), dlq_url=dlq_url)


def provision(
    clients: Any,
    stage: str,
    *,
    secrets: dict[str, str],
    visibility_seconds: int = 360,
    default_route: dict[str, str] | None = None,
) -> Resources:
    """Create every resource of ``stage``; ``clients(service)`` returns a boto3 client."""
    found = Resources(stage=stage)
    sns, sqs = clients("sns"), clients("sqs")
    for topic, queue in (("inbound", "inbound-bridge"),):
        found.topics[topic] = sns.create_topic(
            Name=f"{found.prefix}-{topic}.fifo",
            Attributes={"FifoTopic": "true", "ContentBasedDeduplication": "false"},
        )["TopicArn"]
        found.queues[queue] = _fifo_queue(
            sqs, f"{found.prefix}-{queue}", visibility_seconds=visibility_seconds
        )
        sns.subscribe(
            TopicArn=found.topics[topic],
            Protocol="sqs",
            Endpoint=found.queues[queue].arn,
            Attributes={"RawMessageDelivery": "false"},
        )
    dynamodb = clients("dynamodb")
    _table(dynamodb, found.routes_table, ttl=False)
    _table(dynamodb, found.state_table, ttl=True)
    clients("s3").create_bucket(Bucket=found.bucket)
    ssm = clients("ssm")
    for name, value in secrets.items():
        ssm.put_parameter(
            Name=f"/mailroom/{stage}/{name}", Value=value, Type="SecureString", Overwrite=True
        )
    if default_route is not None:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        dynamodb.put_item(
            TableName=found.routes_table,
            Item={
                "PK": {"S": f"ROUTE#{default_route['pattern']}"},
                "SK": {"S": "RULE#v1"},
                "action": {"S": default_route["action"]},
                "target": {"S": default_route.get("target", "")},
                "enabled": {"BOOL": True},
                "description": {"S": default_route.get("description", "")},
                "created_at": {"S": now},
                "updated_at": {"S": now},
            },
        )
    return found
