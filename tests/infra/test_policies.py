"""The generated IAM policies grant what the exactly-once and no-loss rules depend on."""

from __future__ import annotations

from typing import Any

import pytest

from infra import policies
from mailroom_local.iam_calls import Target, allowed

CONSUMERS = [f for f in policies.FUNCTIONS if f not in {"api_handler", "probe"}]


@pytest.mark.parametrize("function", CONSUMERS)
def test_queue_consumers_may_list_the_payload_prefix_so_a_missing_payload_is_a_404(
    function: str,
) -> None:
    statements = policies.policy("prod", function)["Statement"]
    [listing] = [
        s
        for s in statements
        if s["Action"] == ["s3:ListBucket"] and "payloads/*" in str(s.get("Condition"))
    ]
    assert listing["Resource"] == "arn:aws:s3:::mailroom-prod-mail-*"
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["payloads/*"]}}


@pytest.mark.parametrize("function", CONSUMERS)
def test_queue_consumers_may_count_attempts_and_record_in_the_state_table(function: str) -> None:
    statements = policies.policy("prod", function)["Statement"]
    state = [
        s for s in statements if s["Resource"] == "arn:aws:dynamodb:*:*:table/mailroom-prod-state"
    ]
    actions = {a for s in state for a in s["Action"]}
    # UpdateItem counts attempts and claims keys; PutItem/DeleteItem back the transaction
    # (TransactWriteItems is authorised per item action) and releases.
    assert {"dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:DeleteItem"} <= actions


PRINCIPALS = [*policies.FUNCTIONS, policies.OPERATOR]


def _document(stage: str, principal: str) -> dict[str, Any]:
    if principal == policies.OPERATOR:
        return policies.operator_policy(stage)
    return policies.policy(stage, principal)


def _grants(document: dict[str, Any]) -> set[tuple[str, str]]:
    found = set()
    for statement in document["Statement"]:
        resources = statement["Resource"]
        for action in statement["Action"]:
            for resource in [resources] if isinstance(resources, str) else resources:
                found.add((action, resource))
    return found


def test_the_bridge_may_read_ses_mail_and_hand_postmark_mail_to_gmail_and_bounces() -> None:
    grants = _grants(policies.policy("prod", "inbound_bridge"))

    assert ("s3:GetObject", "arn:aws:s3:::mailroom-prod-mail-*/raw/*") in grants
    assert ("s3:PutObject", "arn:aws:s3:::mailroom-prod-mail-*/payloads/*") in grants
    for queue in ("gmail-forwarder", "bouncer"):
        assert ("sqs:SendMessage", f"arn:aws:sqs:*:*:mailroom-prod-{queue}") in grants
        assert ("sqs:GetQueueUrl", f"arn:aws:sqs:*:*:mailroom-prod-{queue}") in grants


@pytest.mark.parametrize("principal", PRINCIPALS)
@pytest.mark.parametrize("stage", policies.STAGES)
def test_least_privilege_no_wildcard_actions_and_no_bucket_wide_object_access(
    stage: str, principal: str
) -> None:
    for action, resource in _grants(_document(stage, principal)):
        assert "*" not in action, (principal, action)
        if action.startswith("s3:") and action != "s3:ListBucket":
            key = resource.removeprefix("arn:aws:s3:::").partition("/")[2]
            assert key, (principal, action, resource)
            assert not key.startswith("*"), (principal, action, resource)
        if resource == "*":  # only where AWS has no resource-level permission for the action
            assert action in {
                "ssm:DescribeParameters",
                "lambda:ListEventSourceMappings",
                "lambda:GetEventSourceMapping",
                "logs:GetQueryResults",
                # SES's account-level calls (sending quota, account suppression list).
                "ses:GetAccount",
                "ses:PutSuppressedDestination",
                "ses:DeleteSuppressedDestination",
                # Active tracing: X-Ray's write calls take no resource.
                "xray:PutTraceSegments",
                "xray:PutTelemetryRecords",
            }, (principal, action)


def test_the_operator_policy_file_is_the_generated_one() -> None:
    for stage in policies.STAGES:
        path = policies.path(stage, policies.OPERATOR)
        assert path.read_text() == policies.render(stage, policies.OPERATOR)


@pytest.mark.parametrize("stage", policies.STAGES)
def test_the_operator_may_read_a_gmail_mailboxs_authorization_to_check_route_labels(
    stage: str,
) -> None:
    operator = policies.operator_policy(stage)
    parameter = f"arn:aws:ssm:eu-west-1:123456789012:parameter/mailroom/{stage}/gmail/a_at_x.com"
    other_stage = parameter.replace(f"/mailroom/{stage}/", "/mailroom/other/")

    assert allowed(operator, Target("ssm:GetParameters", parameter))
    assert not allowed(operator, Target("ssm:GetParameters", other_stage))
