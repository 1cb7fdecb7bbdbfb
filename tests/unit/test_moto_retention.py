"""The local stack's moto patches: transactions cost what they touch, nothing kept per message,
and what AWS expires is expired."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from mailroom_local import moto_retention

REGION = "us-east-1"


@pytest.fixture
def patched() -> Iterator[None]:
    with mock_aws():
        undo = moto_retention.install()
        yield
        undo()


def _table(ddb: Any, name: str = "t", *, ttl: bool = False) -> None:
    ddb.create_table(
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
        ddb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
        )


def _put(key: str, value: str) -> dict[str, Any]:
    return {
        "Put": {"TableName": "t", "Item": {"PK": {"S": key}, "SK": {"S": "A"}, "v": {"S": value}}}
    }


def test_a_cancelled_transaction_restores_its_items_and_keeps_other_writes(patched: None) -> None:
    ddb = boto3.client("dynamodb", region_name=REGION)
    _table(ddb)
    ddb.put_item(TableName="t", Item={"PK": {"S": "a"}, "SK": {"S": "A"}, "v": {"S": "old"}})
    ddb.put_item(TableName="t", Item={"PK": {"S": "other"}, "SK": {"S": "A"}, "v": {"S": "kept"}})
    failing = {
        "ConditionCheck": {
            "TableName": "t",
            "Key": {"PK": {"S": "missing"}, "SK": {"S": "A"}},
            "ConditionExpression": "attribute_exists(PK)",
        }
    }
    with pytest.raises(ClientError, match="TransactionCanceled"):
        ddb.transact_write_items(TransactItems=[_put("a", "new"), _put("b", "new"), failing])

    def value(key: str) -> str | None:
        item = ddb.get_item(TableName="t", Key={"PK": {"S": key}, "SK": {"S": "A"}}).get("Item")
        return item["v"]["S"] if item else None

    assert (value("a"), value("b"), value("other")) == ("old", None, "kept")
    ddb.transact_write_items(TransactItems=[_put("a", "new"), _put("b", "new")])
    assert (value("a"), value("b")) == ("new", "new")


def test_a_transaction_does_not_copy_the_table(patched: None) -> None:
    from moto.dynamodb.models.table import Table

    ddb = boto3.client("dynamodb", region_name=REGION)
    _table(ddb)
    copies: list[Any] = []
    original = Table.__deepcopy__ if hasattr(Table, "__deepcopy__") else None

    def counting(table: Any, memo: Any) -> Any:
        copies.append(table)
        return table

    Table.__deepcopy__ = counting  # type: ignore[attr-defined]
    try:
        ddb.transact_write_items(TransactItems=[_put("a", "1"), _put("b", "2")])
    finally:
        if original is None:
            del Table.__deepcopy__  # type: ignore[attr-defined]
        else:
            Table.__deepcopy__ = original  # type: ignore[attr-defined]
    assert copies == []


def test_sns_keeps_no_message_and_one_certificate_per_subscription(patched: None) -> None:
    from moto.sns.models import sns_backends

    sns = boto3.client("sns", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    topic = sns.create_topic(Name="t")["TopicArn"]
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn["QueueArn"])
    for n in range(5):
        sns.publish(TopicArn=topic, Message=f"m{n}")
    backend = sns_backends["123456789012"][REGION]
    assert backend.topics[topic].sent_notifications == []
    assert len(backend._message_public_keys) == 1
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert len(received) == 5


def test_every_subscription_signs_with_the_one_key_made_at_start_up(patched: None) -> None:
    """No 2048-bit key is made inside a burst's first deliveries."""
    from moto.sns.models import sns_backends

    sns = boto3.client("sns", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    topic = sns.create_topic(Name="t")["TopicArn"]
    for name in ("a", "b"):
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn["QueueArn"])
    sns.publish(TopicArn=topic, Message="m")

    keys = {
        id(s.private_key()) for s in sns_backends["123456789012"][REGION].subscriptions.values()
    }
    assert keys == {id(moto_retention._signing_key())}


def test_sqs_remembers_a_bounded_window_of_deleted_receipts(
    patched: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.sqs.models import sqs_backends

    monkeypatch.setattr(moto_retention, "DELETED_HANDLES_KEPT", 5)
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    for n in range(12):
        sqs.send_message(QueueUrl=url, MessageBody=str(n))
    handles = []
    while received := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        for message in received:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            handles.append(message["ReceiptHandle"])
    sqs.delete_message(QueueUrl=url, ReceiptHandle=handles[-1])  # a repeat delete succeeds
    queue = sqs_backends["123456789012"][REGION].queues["q"]
    assert len(queue.deleted_messages) == 5


def test_compaction_expires_ttl_items_and_lifecycle_objects(patched: None) -> None:
    ddb = boto3.client("dynamodb", region_name=REGION)
    _table(ddb, ttl=True)
    now = time.time()
    for key, expires in (("gone", now - 10), ("stays", now + 3600), ("none", None)):
        item = {"PK": {"S": key}, "SK": {"S": "A"}}
        if expires is not None:
            item["expires_at"] = {"N": str(int(expires))}
        ddb.put_item(TableName="t", Item=item)
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="mail-bucket")
    s3.put_bucket_lifecycle_configuration(
        Bucket="mail-bucket",
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "q",
                    "Filter": {"Prefix": "quarantine/"},
                    "Status": "Enabled",
                    "Expiration": {"Days": 30},
                }
            ]
        },
    )
    s3.put_object(Bucket="mail-bucket", Key="quarantine/x", Body=b"x")
    s3.put_object(Bucket="mail-bucket", Key="raw/y", Body=b"y")

    assert moto_retention.compact(now) == {"dynamodb_items": 1, "s3_objects": 0}
    items = ddb.scan(TableName="t")["Items"]
    assert sorted(i["PK"]["S"] for i in items) == ["none", "stays"]
    later = now + timedelta(days=31).total_seconds()
    assert moto_retention.compact(later)["s3_objects"] == 1
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="mail-bucket").get("Contents", [])]
    assert keys == ["raw/y"]
