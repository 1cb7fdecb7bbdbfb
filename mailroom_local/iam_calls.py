"""What an AWS call asks IAM for, and whether a policy allows it: pure, shared by the
embedded AWS's checks (``moto_iam``) and the test that evaluates every recorded call.

``targets`` turns one API call (service, operation, parameters) into the IAM actions and
resource ARNs AWS authorizes it against; ``allowed`` evaluates identity-policy statements
(Allow and Deny, ``*``/``?`` wildcards, the few condition operators our policies use).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

ACCOUNT_ID = "123456789012"  # moto's default account, the local stack's only one

# Operations whose IAM action is not named after the operation.
_ACTION_OF = {
    ("s3", "HeadObject"): "GetObject",
    ("s3", "ListObjectsV2"): "ListBucket",
    ("s3", "ListObjects"): "ListBucket",
    ("s3", "HeadBucket"): "ListBucket",
    ("s3", "GetObjectAttributes"): "GetObject",
    # SQS authorizes a batch as its single-message action.
    ("sqs", "SendMessageBatch"): "SendMessage",
    ("sqs", "DeleteMessageBatch"): "DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "ChangeMessageVisibility",
}
# Allowed to every principal, whatever its policy says (AWS and moto alike).
ALWAYS_ALLOWED = frozenset({"sts:GetCallerIdentity"})
# A transaction is authorized per item, as the item's own action (no Transact* action exists).
_TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


@dataclass(frozen=True)
class Target:
    """One authorization question: may the caller do ``action`` on ``resource``?"""

    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = field(default=())


def _domain(address: str) -> str:
    return address.rpartition("<")[2].rstrip(">").rpartition("@")[2].strip()


def targets(service: str, operation: str, params: Mapping[str, Any], region: str) -> list[Target]:
    """The IAM questions one call asks; ``service`` is the signing name (``ses`` for SESv2)."""
    action = f"{service}:{_ACTION_OF.get((service, operation), operation)}"

    def arn(kind: str, resource: str) -> str:
        return f"arn:aws:{kind}:{region}:{ACCOUNT_ID}:{resource}"

    if service == "sqs":
        name = str(params.get("QueueName") or params.get("QueueUrl", "*")).rstrip("/")
        return [Target(action, arn("sqs", name.rsplit("/", 1)[-1]))]
    if service == "sns":
        topic = params.get("TopicArn") or params.get("TargetArn")
        return [Target(action, str(topic or "*"))]
    if service == "s3":
        bucket = str(params.get("Bucket", "*"))
        if "Key" in params:
            return [Target(action, f"arn:aws:s3:::{bucket}/{params['Key']}")]
        context = (("s3:prefix", str(params["Prefix"])),) if "Prefix" in params else ()
        return [Target(action, f"arn:aws:s3:::{bucket}", context)]
    if service == "dynamodb":
        return _dynamodb(operation, action, params, arn)
    if service == "ssm":
        names = params.get("Names") or [params.get("Name") or params.get("Path") or "*"]
        return [Target(action, arn("ssm", "parameter/" + str(n).lstrip("/"))) for n in names]
    if service == "ses":
        sender = (
            params.get("BounceSender") or params.get("FromEmailAddress") or params.get("Source")
        )
        found = [Target(action, arn("ses", f"identity/{_domain(str(sender))}"))] if sender else []
        if params.get("ConfigurationSetName"):
            found.append(
                Target(action, arn("ses", f"configuration-set/{params['ConfigurationSetName']}"))
            )
        return found or [Target(action, "*")]
    return [Target(action, "*")]


def _dynamodb(operation: str, action: str, params: Mapping[str, Any], arn: Any) -> list[Target]:
    def table(name: str, index: str | None = None) -> str:
        return str(arn("dynamodb", f"table/{name}" + (f"/index/{index}" if index else "")))

    if operation in {"TransactWriteItems", "TransactGetItems"}:
        found = []
        for item in params.get("TransactItems", []):
            for kind, body in item.items():
                found.append(
                    Target(f"dynamodb:{_TRANSACT_ACTIONS[kind]}", table(body["TableName"]))
                )
        return found
    if operation in {"BatchGetItem", "BatchWriteItem"}:
        return [Target(action, table(name)) for name in params.get("RequestItems", {})]
    return [Target(action, table(str(params.get("TableName", "*")), params.get("IndexName")))]


@cache
def _pattern(text: str, case_sensitive: bool) -> re.Pattern[str]:
    body = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in text)
    return re.compile(f"^{body}$", 0 if case_sensitive else re.IGNORECASE)


def _matches(patterns: str | Iterable[str], value: str, *, case_sensitive: bool) -> bool:
    items = [patterns] if isinstance(patterns, str) else list(patterns)
    return any(_pattern(p, case_sensitive).match(value) for p in items)


def _conditions_hold(conditions: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    """StringLike / StringEquals over the request's context; a missing key does not match."""
    for operator, tests in conditions.items():
        for key, expected in tests.items():
            if key not in context:
                return False
            values = [expected] if isinstance(expected, str) else list(expected)
            if operator == "StringLike":
                if not _matches(values, context[key], case_sensitive=True):
                    return False
            elif operator == "StringEquals":
                if context[key] not in values:
                    return False
            else:
                raise ValueError(f"condition operator {operator} is not evaluated here")
    return True


def allowed(policy: Mapping[str, Any], target: Target) -> bool:
    """True if ``policy`` allows ``target`` (an explicit Deny wins; no match is a denial)."""
    if target.action in ALWAYS_ALLOWED:
        return True
    statements = policy["Statement"]
    statements = [statements] if isinstance(statements, Mapping) else statements
    context = dict(target.context)
    verdict = False
    for statement in statements:
        if "NotAction" in statement or "NotResource" in statement:
            raise ValueError("NotAction and NotResource are not evaluated here")
        if not _matches(statement["Action"], target.action, case_sensitive=False):
            continue
        if not _matches(statement["Resource"], target.resource, case_sensitive=True):
            continue
        if not _conditions_hold(statement.get("Condition", {}), context):
            continue
        if statement["Effect"] == "Deny":
            return False
        verdict = True
    return verdict
