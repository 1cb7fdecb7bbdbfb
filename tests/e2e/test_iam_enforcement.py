"""The embedded AWS refuses, as AccessDenied naming action and resource, every call a
principal's policy does not allow: S3 prefixes and SQS queues (moto's own check), DynamoDB
tables and transaction items, SNS topics and SSM parameters (``mailroom_local.moto_iam``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from chalicelib.platform.errors import access_denied
from mailroom_local.stack import _start_moto

pytestmark = pytest.mark.e2e
REGION = "us-east-1"
ACCOUNT = "123456789012"
POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": "arn:aws:s3:::iam-mail/payloads/*",
        },
        {"Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": "arn:aws:sqs:*:*:allowed"},
        {
            "Effect": "Allow",
            "Action": ["dynamodb:PutItem", "dynamodb:GetItem"],
            "Resource": "arn:aws:dynamodb:*:*:table/allowed",
        },
        {"Effect": "Allow", "Action": ["sns:Publish"], "Resource": "arn:aws:sns:*:*:allowed"},
        {
            "Effect": "Allow",
            "Action": ["ssm:GetParameters"],
            "Resource": "arn:aws:ssm:*:*:parameter/mailroom/allowed/*",
        },
    ],
}


@pytest.fixture(scope="module")
def aws() -> Iterator[dict[str, Any]]:
    moto = _start_moto()
    endpoint = f"http://127.0.0.1:{moto.port}"

    def client(service: str, keys: dict[str, str] | None = None) -> Any:
        keys = keys or {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
        return boto3.client(service, endpoint_url=endpoint, region_name=REGION, **keys)

    try:
        iam = client("iam")
        iam.create_user(UserName="fn")
        iam.put_user_policy(UserName="fn", PolicyName="p", PolicyDocument=json.dumps(POLICY))
        key = iam.create_access_key(UserName="fn")["AccessKey"]
        keys = {
            "aws_access_key_id": key["AccessKeyId"],
            "aws_secret_access_key": key["SecretAccessKey"],
        }
        client("s3").create_bucket(Bucket="iam-mail")
        client("s3").put_object(Bucket="iam-mail", Key="raw/1", Body=b"x")
        client("s3").put_object(Bucket="iam-mail", Key="payloads/1", Body=b"x")
        for name in ("allowed", "other"):
            client("sqs").create_queue(QueueName=name)
            client("sns").create_topic(Name=name)
            client("dynamodb").create_table(
                TableName=name,
                KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
            client("ssm").put_parameter(Name=f"/mailroom/{name}/p", Value="v", Type="SecureString")
        yield {"as_function": lambda service: client(service, keys)}
    finally:
        moto.stop()
        for pipe in (moto.process.stdin, moto.process.stdout):
            if pipe is not None:
                pipe.close()


def _refused(call: Any) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    denied = access_denied(caught.value)
    assert denied is not None, caught.value
    return denied.reason


def _queue(name: str) -> str:
    return f"http://127.0.0.1/{ACCOUNT}/{name}"


def test_s3_and_sqs_are_checked_per_prefix_and_queue(aws: dict[str, Any]) -> None:
    s3, sqs = aws["as_function"]("s3"), aws["as_function"]("sqs")

    assert s3.get_object(Bucket="iam-mail", Key="payloads/1")["Body"].read() == b"x"
    assert _refused(lambda: s3.get_object(Bucket="iam-mail", Key="raw/1")) == (
        "AccessDenied: s3:GetObject on arn:aws:s3:::iam-mail/raw/1"
    )
    sqs.send_message(QueueUrl=_queue("allowed"), MessageBody="x")
    assert _refused(lambda: sqs.send_message(QueueUrl=_queue("other"), MessageBody="x")) == (
        f"AccessDenied: sqs:SendMessage on arn:aws:sqs:{REGION}:{ACCOUNT}:other"
    )


def test_dynamodb_sns_and_ssm_are_checked_per_table_topic_and_parameter(
    aws: dict[str, Any],
) -> None:
    dynamodb, sns, ssm = (aws["as_function"](s) for s in ("dynamodb", "sns", "ssm"))
    item = {"PK": {"S": "a"}}

    dynamodb.put_item(TableName="allowed", Item=item)
    assert _refused(lambda: dynamodb.put_item(TableName="other", Item=item)) == (
        f"AccessDenied: dynamodb:PutItem on arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/other"
    )
    # A transaction is authorized per item's action: PutItem here, DeleteItem refused.
    dynamodb.transact_write_items(TransactItems=[{"Put": {"TableName": "allowed", "Item": item}}])
    assert "dynamodb:DeleteItem on" in _refused(
        lambda: dynamodb.transact_write_items(
            TransactItems=[{"Delete": {"TableName": "allowed", "Key": item}}]
        )
    )
    sns.publish(TopicArn=f"arn:aws:sns:{REGION}:{ACCOUNT}:allowed", Message="x")
    assert (
        _refused(lambda: sns.publish(TopicArn=f"arn:aws:sns:{REGION}:{ACCOUNT}:other", Message="x"))
        == f"AccessDenied: sns:Publish on arn:aws:sns:{REGION}:{ACCOUNT}:other"
    )
    ssm.get_parameters(Names=["/mailroom/allowed/p"], WithDecryption=True)
    parameter = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/mailroom/other/p"
    assert _refused(lambda: ssm.get_parameters(Names=["/mailroom/other/p"])) == (
        f"AccessDenied: ssm:GetParameters on {parameter}"
    )
