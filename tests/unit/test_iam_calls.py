"""The calls-to-IAM translation and the policy evaluator the permission test relies on."""

from __future__ import annotations

from typing import Any

import pytest

from mailroom_local.iam_calls import Target, allowed, targets

REGION = "us-east-1"
POLICY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": "arn:aws:s3:::mailroom-local-mail-*/payloads/*",
        },
        {
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": "arn:aws:s3:::mailroom-local-mail-*",
            "Condition": {"StringLike": {"s3:prefix": ["payloads/*"]}},
        },
        {
            "Effect": "Allow",
            "Action": ["sqs:SendMessage", "dynamodb:PutItem"],
            "Resource": [
                "arn:aws:sqs:*:*:mailroom-local-bouncer",
                "arn:aws:dynamodb:*:*:table/mailroom-local-state",
            ],
        },
        {
            "Effect": "Deny",
            "Action": ["s3:GetObject"],
            "Resource": "arn:aws:s3:::mailroom-local-mail-*/payloads/secret*",
        },
    ],
}


def _one(service: str, operation: str, params: dict[str, Any]) -> Target:
    [target] = targets(service, operation, params, REGION)
    return target


def test_calls_become_the_actions_and_resources_aws_authorizes() -> None:
    assert _one("s3", "HeadObject", {"Bucket": "b", "Key": "raw/1"}) == Target(
        "s3:GetObject", "arn:aws:s3:::b/raw/1"
    )
    assert _one(
        "sqs", "DeleteMessageBatch", {"QueueUrl": "http://x/123456789012/q.fifo"}
    ) == Target("sqs:DeleteMessage", "arn:aws:sqs:us-east-1:123456789012:q.fifo")
    assert _one("ses", "SendBounce", {"BounceSender": "mailer-daemon@mailroom.test"}) == Target(
        "ses:SendBounce", "arn:aws:ses:us-east-1:123456789012:identity/mailroom.test"
    )
    assert targets("ssm", "GetParameters", {"Names": ["/mailroom/a", "/mailroom/b"]}, REGION) == [
        Target("ssm:GetParameters", f"arn:aws:ssm:{REGION}:123456789012:parameter/mailroom/{n}")
        for n in "ab"
    ]


def test_a_transaction_is_authorized_per_item_action_and_table() -> None:
    found = targets(
        "dynamodb",
        "TransactWriteItems",
        {
            "TransactItems": [
                {"Put": {"TableName": "state"}},
                {"ConditionCheck": {"TableName": "routes"}},
            ]
        },
        REGION,
    )

    table = f"arn:aws:dynamodb:{REGION}:123456789012:table"
    assert found == [
        Target("dynamodb:PutItem", f"{table}/state"),
        Target("dynamodb:ConditionCheckItem", f"{table}/routes"),
    ]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (Target("s3:GetObject", "arn:aws:s3:::mailroom-local-mail-1/payloads/k"), True),
        (Target("s3:GetObject", "arn:aws:s3:::mailroom-local-mail-1/raw/k"), False),
        (Target("s3:PutObject", "arn:aws:s3:::mailroom-local-mail-1/payloads/k"), False),
        (Target("s3:GetObject", "arn:aws:s3:::mailroom-local-mail-1/payloads/secret1"), False),
        (Target("sqs:SendMessage", "arn:aws:sqs:us-east-1:1:mailroom-local-bouncer"), True),
        (
            Target("sqs:SendMessage", "arn:aws:sqs:us-east-1:1:mailroom-local-gmail-forwarder"),
            False,
        ),
        (
            Target("dynamodb:PutItem", "arn:aws:dynamodb:us-east-1:1:table/mailroom-local-state"),
            True,
        ),
        (
            Target("dynamodb:PutItem", "arn:aws:dynamodb:us-east-1:1:table/mailroom-local-routes"),
            False,
        ),
        (Target("sts:GetCallerIdentity", "*"), True),
    ],
)
def test_the_evaluator_allows_only_what_a_statement_allows_and_no_statement_denies(
    target: Target, expected: bool
) -> None:
    assert allowed(POLICY, target) is expected


@pytest.mark.parametrize(
    ("context", "expected"),
    [((("s3:prefix", "payloads/x"),), True), ((("s3:prefix", "raw/x"),), False), ((), False)],
)
def test_a_condition_holds_only_for_the_context_it_names(
    context: tuple[tuple[str, str], ...], expected: bool
) -> None:
    target = Target("s3:ListBucket", "arn:aws:s3:::mailroom-local-mail-1", context)

    assert allowed(POLICY, target) is expected
