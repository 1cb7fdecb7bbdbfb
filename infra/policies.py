"""Least-privilege IAM policy per function and stage: ``python -m infra.policies`` writes them.

Chalice's policy generator reads only app.py, and the pipeline's calls live in chalicelib/,
so each function gets a hand-kept policy file (``.chalice/policy-<stage>-<function>.json``)
generated from this one table; a test keeps the committed files equal to it. The operator
CLI's policy is rendered beside them; the local stack gives each function and the operator
exactly these policies (``mailroom_local.iam``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("dev", "prod")
FUNCTIONS = (
    "api_handler",
    "inbound_bridge",
    "outbound_sender",
    "ses_router",
    "gmail_forwarder",
    "bouncer",
    "probe",
    "ses_feedback",
)
# Not a function: the operator CLI's principal, rendered beside the functions' policies.
OPERATOR = "operator"


def _arn(service: str, resource: str) -> str:
    return f"arn:aws:{service}:*:*:{resource}"


def _consumer(prefix: str, queue: str, *, fifo: bool = True) -> list[dict[str, Any]]:
    """What every SQS-triggered function needs: its queue, its DLQ, the state table."""
    suffix = ".fifo" if fifo else ""
    return [
        {
            "Effect": "Allow",
            "Action": [
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:DeleteMessageBatch",
                "sqs:GetQueueAttributes",
                "sqs:GetQueueUrl",
                "sqs:ChangeMessageVisibility",
            ],
            "Resource": _arn("sqs", f"{prefix}-{queue}{suffix}"),
        },
        {
            "Effect": "Allow",
            "Action": ["sqs:SendMessage", "sqs:GetQueueUrl"],
            "Resource": _arn("sqs", f"{prefix}-{queue}-dlq{suffix}"),
        },
        {
            "Effect": "Allow",
            "Action": [
                "dynamodb:GetItem",
                "dynamodb:BatchGetItem",
                "dynamodb:PutItem",
                "dynamodb:BatchWriteItem",
                "dynamodb:UpdateItem",
                "dynamodb:DeleteItem",
            ],
            "Resource": _arn("dynamodb", f"table/{prefix}-state"),
        },
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": f"arn:aws:s3:::{prefix}-mail-*/payloads/*",
        },
        {
            # Without ListBucket, S3 answers a missing key with 403 instead of 404, and a
            # lost claim-checked payload would look transient instead of poison.
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": f"arn:aws:s3:::{prefix}-mail-*",
            "Condition": {"StringLike": {"s3:prefix": ["payloads/*"]}},
        },
    ]


def policy(stage: str, function: str) -> dict[str, Any]:
    prefix = f"mailroom-{stage}"
    logs = {
        "Effect": "Allow",
        "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": "arn:aws:logs:*:*:*",
    }
    secrets = {
        "Effect": "Allow",
        "Action": ["ssm:GetParameters"],
        "Resource": _arn("ssm", f"parameter/mailroom/{stage}/*"),
    }
    # Active tracing (``"xray": true`` in .chalice/config.json): the function's segments.
    tracing = {
        "Effect": "Allow",
        "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
        "Resource": "*",
    }
    statements: list[dict[str, Any]] = [logs, secrets, tracing]
    if function == "api_handler":
        statements += [
            {
                "Effect": "Allow",
                "Action": ["sns:Publish"],
                "Resource": [
                    _arn("sns", f"{prefix}-inbound.fifo"),
                    _arn("sns", f"{prefix}-outbound.fifo"),
                ],
            },
            {
                "Effect": "Allow",
                "Action": ["s3:PutObject"],
                "Resource": [
                    f"arn:aws:s3:::{prefix}-mail-*/{folder}/*"
                    for folder in ("quarantine", "rejected", "payloads", "events")
                ],
            },
            {
                # Replay records of signatures, feedback events, suppression list, delivery log.
                "Effect": "Allow",
                "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"],
                "Resource": _arn("dynamodb", f"table/{prefix}-state"),
            },
            _ses_suppression("ses:PutSuppressedDestination", "ses:DeleteSuppressedDestination"),
        ]
    if function == "inbound_bridge":
        statements += _consumer(prefix, "inbound-bridge")
        statements += [
            {
                "Effect": "Allow",
                "Action": ["dynamodb:Scan"],
                "Resource": _arn("dynamodb", f"table/{prefix}-routes"),
            },
            # SES mail routed to FreeScout reaches the bridge as a reference to its raw MIME.
            *_raw(prefix),
            # Postmark mail with a gmail or bounce route: the bridge hands it to that queue,
            # its payload claim-checked when large.
            _action_queues(prefix),
            {
                "Effect": "Allow",
                "Action": ["s3:PutObject"],
                "Resource": f"arn:aws:s3:::{prefix}-mail-*/payloads/*",
            },
        ]
    if function == "outbound_sender":
        statements += _consumer(prefix, "outbound-sender")
    if function == "probe":  # probe records, the delivery log, the outbound topic
        statements += [
            {
                "Effect": "Allow",
                "Action": ["dynamodb:PutItem", "dynamodb:Query"],
                "Resource": _arn("dynamodb", f"table/{prefix}-state"),
            },
            {
                "Effect": "Allow",
                "Action": ["sns:Publish"],
                "Resource": _arn("sns", f"{prefix}-outbound.fifo"),
            },
        ]
    statements += _ses_inbound(stage, function)
    statements += _ses_sending(stage, function)
    return {"Version": "2012-10-17", "Statement": statements}


def _ses_inbound(stage: str, function: str) -> list[dict[str, Any]]:
    """SES inbound: the router, the Gmail forwarder and the bouncer."""
    prefix = f"mailroom-{stage}"
    raw = _raw(prefix)
    # The router reads the rules; the Gmail forwarder reads them again when Gmail refuses a
    # label, so a redrive after the route is fixed imports with the fixed labels.
    routes = {
        "Effect": "Allow",
        "Action": ["dynamodb:Scan"],
        "Resource": _arn("dynamodb", f"table/{prefix}-routes"),
    }
    if function == "ses_router":
        return [
            *_consumer(prefix, "ses-inbound", fifo=False),
            *raw,
            routes,
            _action_queues(prefix),
            {
                "Effect": "Allow",
                "Action": ["sns:Publish"],
                "Resource": _arn("sns", f"{prefix}-inbound.fifo"),
            },
        ]
    if function == "gmail_forwarder":
        return [*_consumer(prefix, "gmail-forwarder", fifo=False), *raw, routes]
    if function == "bouncer":
        return [
            *_consumer(prefix, "bouncer", fifo=False),
            *raw,
            {
                "Effect": "Allow",
                "Action": ["ses:SendBounce"],
                "Resource": _arn("ses", f"identity/{_bounce_identity(stage)}"),
            },
            {
                "Effect": "Allow",
                "Action": ["sns:Publish"],
                "Resource": _arn("sns", f"{prefix}-outbound.fifo"),
            },
        ]
    return []


def _ses_sending(stage: str, function: str) -> list[dict[str, Any]]:
    """SES as an outbound provider: the sender's SESv2 calls, and the feedback consumer."""
    prefix = f"mailroom-{stage}"
    query = {
        # The delivery log's history: SES's own events are the proof of an uncertain send.
        "Effect": "Allow",
        "Action": ["dynamodb:Query"],
        "Resource": _arn("dynamodb", f"table/{prefix}-state"),
    }
    if function == "outbound_sender":
        return [
            query,
            {
                # SESv2 SendEmail is authorised on the sending identity and the configuration set.
                "Effect": "Allow",
                "Action": ["ses:SendEmail", "ses:SendRawEmail"],
                "Resource": [
                    _arn("ses", "identity/*"),
                    _arn("ses", f"configuration-set/{prefix}"),
                ],
            },
            {
                # GetAccount (sending rate, the failover probe) has no resource.
                "Effect": "Allow",
                "Action": ["ses:GetAccount"],
                "Resource": "*",
            },
            _ses_suppression("ses:PutSuppressedDestination"),
        ]
    if function == "ses_feedback":
        return [
            *_consumer(prefix, "ses-feedback", fifo=False),
            query,
            _ses_suppression("ses:PutSuppressedDestination"),
        ]
    return []


def _ses_suppression(*actions: str) -> dict[str, Any]:
    """SES's account-level suppression list, kept in step with ours by whoever changes ours.
    Its actions have no resource-level permission."""
    return {"Effect": "Allow", "Action": list(actions), "Resource": "*"}


def _raw(prefix: str) -> list[dict[str, Any]]:
    """Read SES's raw MIME under ``raw/``."""
    return [
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": f"arn:aws:s3:::{prefix}-mail-*/raw/*",
        },
        {
            # Without ListBucket a missing raw object answers 403, not 404 ("missing from S3").
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": f"arn:aws:s3:::{prefix}-mail-*",
            "Condition": {"StringLike": {"s3:prefix": ["raw/*"]}},
        },
    ]


def _action_queues(prefix: str) -> dict[str, Any]:
    """Send to the Gmail forwarder's and the bouncer's queues (router and bridge)."""
    return {
        "Effect": "Allow",
        "Action": ["sqs:SendMessage", "sqs:GetQueueUrl"],
        "Resource": [_arn("sqs", f"{prefix}-gmail-forwarder"), _arn("sqs", f"{prefix}-bouncer")],
    }


def _bounce_identity(stage: str) -> str:
    """The verified SES identity (domain) of the stage's MAILROOM_BOUNCE_SENDER, if configured."""
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    stage_config = config["stages"].get(stage, {})
    sender = (
        stage_config.get("lambda_functions", {})
        .get("bouncer", {})
        .get("environment_variables", {})
        .get("MAILROOM_BOUNCE_SENDER")
        or stage_config.get("environment_variables", {}).get("MAILROOM_BOUNCE_SENDER")
        or ""
    )
    return sender.rpartition("@")[2] or "*"


def operator_policy(stage: str) -> dict[str, Any]:
    """What the operator CLI (``mailroom``) needs on a stage: the runbook's reads and writes,
    and of the stage's parameters the values the probe and the route label check use.
    Rendered to ``.chalice/policy-<stage>-operator.json``
    for an operator's IAM user or role; not deployed with the functions."""
    prefix = f"mailroom-{stage}"
    tables = [_arn("dynamodb", f"table/{prefix}-{name}") for name in ("routes", "state")]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                # DLQ runbook (peek, analyze, redrive, discard, quarantine) and health.
                "Effect": "Allow",
                "Action": [
                    "sqs:GetQueueUrl",
                    "sqs:GetQueueAttributes",
                    "sqs:ReceiveMessage",
                    "sqs:SendMessage",
                    "sqs:DeleteMessage",
                    "sqs:ChangeMessageVisibility",
                    "sqs:StartMessageMoveTask",
                    "sqs:ListMessageMoveTasks",
                ],
                "Resource": _arn("sqs", f"{prefix}-*"),
            },
            {
                # Health reads the subscriptions; the probe publishes to the outbound topic.
                "Effect": "Allow",
                "Action": ["sns:ListSubscriptionsByTopic", "sns:GetTopicAttributes", "sns:Publish"],
                "Resource": _arn("sns", f"{prefix}-*"),
            },
            {
                # Routes, suppression list, audit records, trace index, probe records.
                "Effect": "Allow",
                "Action": [
                    "dynamodb:GetItem",
                    "dynamodb:BatchGetItem",
                    "dynamodb:Query",
                    "dynamodb:Scan",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:DeleteItem",
                    "dynamodb:BatchWriteItem",
                ],
                "Resource": tables,
            },
            {
                # Quarantined messages are kept in the bucket; peek reads claim checks and raw mail.
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": [
                    f"arn:aws:s3:::{prefix}-mail-*/{folder}/*"
                    for folder in ("quarantine", "discarded", "payloads", "raw", "rejected")
                ],
            },
            {
                # Health and routes check that parameters exist (names only);
                # DescribeParameters has no resource-level permission in AWS.
                "Effect": "Allow",
                "Action": ["ssm:DescribeParameters"],
                "Resource": "*",
            },
            {
                # The probe's webhook credentials; a Gmail mailbox's authorization, with which
                # `routes add|set` reads the mailbox's labels to check a rule's label ids.
                "Effect": "Allow",
                "Action": ["ssm:GetParameters"],
                "Resource": _arn("ssm", f"parameter/mailroom/{stage}/*"),
            },
            {
                # stop/resume and health: the functions' event source mappings. Listing them
                # has no resource-level permission in AWS.
                "Effect": "Allow",
                "Action": ["lambda:ListEventSourceMappings", "lambda:GetEventSourceMapping"],
                "Resource": "*",
            },
            {
                "Effect": "Allow",
                "Action": ["lambda:UpdateEventSourceMapping"],
                "Resource": "arn:aws:lambda:*:*:event-source-mapping:*",
            },
            _ses_suppression("ses:PutSuppressedDestination", "ses:DeleteSuppressedDestination"),
            {
                # trace: Logs Insights over the functions' log groups.
                "Effect": "Allow",
                "Action": ["logs:StartQuery", "logs:DescribeLogGroups"],
                "Resource": f"arn:aws:logs:*:*:log-group:/aws/lambda/mailroom-{stage}*",
            },
            {
                "Effect": "Allow",
                "Action": ["logs:GetQueryResults"],
                "Resource": "*",
            },
            {
                "Effect": "Allow",
                "Action": ["cloudwatch:DescribeAlarms"],
                "Resource": f"arn:aws:cloudwatch:*:*:alarm:mailroom-{stage}-*",
            },
        ],
    }


def path(stage: str, function: str) -> Path:
    return ROOT / ".chalice" / f"policy-{stage}-{function}.json"


def render(stage: str, function: str) -> str:
    document = operator_policy(stage) if function == OPERATOR else policy(stage, function)
    return json.dumps(document, indent=2) + "\n"


def main() -> int:
    for stage in STAGES:
        for function in (*FUNCTIONS, OPERATOR):
            path(stage, function).write_text(render(stage, function))
    return 0


if __name__ == "__main__":
    sys.exit(main())
