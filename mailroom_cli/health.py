"""``mailroom health``: HEALTHY, DEGRADED or UNHEALTHY, with every reason.

Checks queues and DLQs against thresholds, SNS subscriptions and the queue policies that
let the topics deliver (F4), event source mappings (enabled, ReportBatchItemFailures,
MaximumConcurrency within the function's reserved concurrency), stopped pipelines, SSM
parameters (present, never read), Gmail authorization and the last probe, where those exist.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import asdict, dataclass
from enum import IntEnum
from typing import Any

import click

from chalicelib.mail.routing import RouteAction
from chalicelib.platform.secrets import (
    FREESCOUT_API_KEY,
    OUTBOUND_SIGNING_SECRET,
    POSTMARK_SERVER_TOKEN,
    WEBHOOK_BASIC_AUTH,
)
from mailroom_cli.console import Finding, emit, say
from mailroom_cli.context import Context
from mailroom_cli.control import STOPPED_STATES, mappings
from mailroom_cli.dlq import queue_status
from mailroom_cli.pipelines import Pipeline
from mailroom_cli.routes import gmail_parameter, parameter_exists

# Source queue: oldest message age (s) that is worrying / an outage.
QUEUE_AGE_DEGRADED, QUEUE_AGE_UNHEALTHY = 300, 3600
# Any dead letter degrades; this many (or any older than a day) is unhealthy.
DLQ_DEPTH_UNHEALTHY, DLQ_AGE_UNHEALTHY = 100, 86_400
PARAMETERS = (WEBHOOK_BASIC_AUTH, FREESCOUT_API_KEY, POSTMARK_SERVER_TOKEN, OUTBOUND_SIGNING_SECRET)
REPORT_FLAG = "ReportBatchItemFailures"


class Level(IntEnum):
    HEALTHY = 0
    DEGRADED = 1
    UNHEALTHY = 2


@dataclass(frozen=True)
class Check:
    area: str
    level: Level
    detail: str

    def row(self) -> dict[str, str]:
        return {**asdict(self), "level": self.level.name}


def _queues(ctx: Context, pipeline: Pipeline) -> list[Check]:
    row = queue_status(ctx, pipeline)
    area = f"queues/{pipeline.name}"
    found = []
    age = row.get("oldest_s")
    if age is not None and age >= QUEUE_AGE_DEGRADED:
        level = Level.UNHEALTHY if age >= QUEUE_AGE_UNHEALTHY else Level.DEGRADED
        found.append(Check(area, level, f"oldest queued message is {age} s old"))
    depth, dlq_age = row.get("dlq", 0), row.get("dlq_oldest_s") or 0
    if depth:
        bad = depth >= DLQ_DEPTH_UNHEALTHY or dlq_age >= DLQ_AGE_UNHEALTHY
        found.append(
            Check(
                area,
                Level.UNHEALTHY if bad else Level.DEGRADED,
                f"{depth} dead letter(s), oldest {dlq_age} s (F5): mailroom dlq analyze",
            )
        )
    if row.get("subscription_dlq"):
        found.append(
            Check(
                area,
                Level.UNHEALTHY,
                f"{row['subscription_dlq']} undeliverable SNS message(s) (F4)",
            )
        )
    return found or [Check(area, Level.HEALTHY, f"{row.get('queued', 0)} queued, no dead letters")]


def _subscription(ctx: Context, pipeline: Pipeline) -> list[Check]:
    topic_name = pipeline.topic_name(ctx.stage)
    if topic_name is None:
        return []
    area = f"subscription/{pipeline.name}"
    sns = ctx.client("sns")
    topic = f"arn:aws:sns:{ctx.target.region}:{ctx.account_id}:{topic_name}"
    queue_arn = ctx.queue_arn(pipeline.queue_name(ctx.stage))
    try:
        subs = sns.list_subscriptions_by_topic(TopicArn=topic).get("Subscriptions", [])
    except sns.exceptions.NotFoundException:
        return [Check(area, Level.UNHEALTHY, f"topic {topic_name} does not exist (F4)")]
    mine = [s for s in subs if s.get("Endpoint") == queue_arn]
    if not mine:
        return [Check(area, Level.UNHEALTHY, f"no subscription of the queue to {topic_name} (F4)")]
    if any(s["SubscriptionArn"] == "PendingConfirmation" for s in mine):
        return [Check(area, Level.UNHEALTHY, "subscription pending confirmation (F4)")]
    url = ctx.queue_url(pipeline.queue_name(ctx.stage))
    policy = ctx.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])
    if not _allows(policy.get("Attributes", {}).get("Policy"), topic, queue_arn):
        return [Check(area, Level.UNHEALTHY, "queue policy does not let the topic send (F4)")]
    return [Check(area, Level.HEALTHY, "confirmed; queue policy lets the topic send")]


def _allows(policy: str | None, topic: str, queue_arn: str) -> bool:
    """Whether a queue policy allows SNS (from ``topic``) to SendMessage to ``queue_arn``."""
    if not policy:
        return False
    for statement in json.loads(policy).get("Statement", []):
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        resources = statement.get("Resource", [])
        resources = [resources] if isinstance(resources, str) else resources
        principal = json.dumps(statement.get("Principal", ""))
        source = json.dumps(statement.get("Condition", {}))
        if (
            statement.get("Effect") == "Allow"
            and any(a in {"sqs:SendMessage", "sqs:*", "*"} for a in actions)
            and (queue_arn in resources or "*" in resources)
            and ("sns.amazonaws.com" in principal or principal == '"*"')
            and (topic in source or source == "{}")
        ):
            return True
    return False


def _mappings(ctx: Context, pipeline: Pipeline) -> list[Check]:
    area = f"consumer/{pipeline.name}"
    if ctx.target.local:
        return [Check(area, Level.HEALTHY, "local stack: the pump consumes the queue")]
    found = mappings(ctx, pipeline)
    if not found:
        return [Check(area, Level.UNHEALTHY, "no event source mapping: nothing consumes it")]
    checks = []
    function = ctx.client("lambda")
    for mapping in found:
        if mapping.get("State") in STOPPED_STATES:
            checks.append(Check(area, Level.DEGRADED, f"STOPPED (mapping {mapping['UUID']})"))
        if REPORT_FLAG not in mapping.get("FunctionResponseTypes", []):
            checks.append(Check(area, Level.DEGRADED, f"{REPORT_FLAG} is not set"))
        maximum = (mapping.get("ScalingConfig") or {}).get("MaximumConcurrency")
        reserved = function.get_function_concurrency(FunctionName=mapping["FunctionArn"]).get(
            "ReservedConcurrentExecutions"
        )
        if maximum is None:
            checks.append(Check(area, Level.DEGRADED, "no MaximumConcurrency on the mapping"))
        elif reserved is not None and maximum > reserved:
            checks.append(
                Check(
                    area,
                    Level.DEGRADED,
                    f"MaximumConcurrency {maximum} > reserved concurrency {reserved}",
                )
            )
        if reserved == 0:
            checks.append(Check(area, Level.UNHEALTHY, "reserved concurrency 0: throttled"))
    return checks or [Check(area, Level.HEALTHY, "enabled, partial batch responses, bounded")]


def _parameters(ctx: Context) -> list[Check]:
    ssm = ctx.client("ssm")
    missing = []
    for name in PARAMETERS:
        full = ctx.settings.parameter(name)
        found = ssm.describe_parameters(
            ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [full]}]
        ).get("Parameters", [])
        if not found:
            missing.append(full)
    if missing:
        return [Check("ssm", Level.UNHEALTHY, f"missing parameter(s): {', '.join(missing)}")]
    return [Check("ssm", Level.HEALTHY, f"{len(PARAMETERS)} parameters present")]


def _optional(module: str, function: str) -> Any:
    """``module.function`` when another part of mailroom provides it, else None."""
    try:
        return getattr(importlib.import_module(module), function, None)
    except ImportError:
        return None


def _gmail(ctx: Context) -> list[Check]:
    """Gmail mailboxes: authorization stored in SSM for every gmail route, and no mailbox the
    forwarder marked for re-authorization (``GMAILAUTH#`` records, written on invalid_grant)."""
    mailboxes = sorted(
        {
            r.target
            for r in ctx.routes.rules().values()
            if r.action is RouteAction.GMAIL and r.enabled
        }
    )
    checks = [
        Check("gmail", Level.UNHEALTHY, f"no authorization in SSM: {gmail_parameter(ctx, m)}")
        for m in mailboxes
        if not parameter_exists(ctx, gmail_parameter(ctx, m))
    ]
    failures = _optional("chalicelib.handlers.gmail_forwarder", "auth_failures")
    for failure in failures(ctx.settings, ctx.client("dynamodb")) if failures else []:
        checks.append(
            Check(
                "gmail",
                Level.UNHEALTHY,
                f"authorization expired ({failure.get('reason', 'invalid_grant')}, "
                f"{failure.get('at', '?')}): re-authorize with python -m infra.gmail_auth",
            )
        )
    alive = _optional("chalicelib.providers.gmail.client", "authorization_alive")
    if alive is not None:
        dead = [m for m in mailboxes if not alive(ctx.settings, m)]
        if dead:
            checks.append(Check("gmail", Level.UNHEALTHY, f"{len(dead)} mailbox(es) refused"))
    if mailboxes and not checks:
        checks.append(Check("gmail", Level.HEALTHY, f"{len(mailboxes)} mailbox(es) authorized"))
    return checks


def _probe(ctx: Context) -> list[Check]:
    last = _optional("chalicelib.handlers.probe.checks", "last_result")
    if last is None:
        return []
    result = last(ctx.settings, dynamodb=ctx.client("dynamodb"))
    if result is None:
        # Probes are off unless configured; when on, the F1 alarm fires on a missing probe.
        return [Check("probe", Level.HEALTHY, "no probe has run (off unless configured)")]
    ok = bool(getattr(result, "ok", False))
    detail = str(getattr(result, "summary", result))
    return [Check("probe", Level.HEALTHY if ok else Level.UNHEALTHY, detail)]


def run_checks(ctx: Context) -> list[Check]:
    checks: list[Check] = []
    for pipeline in ctx.pipelines():
        checks += _queues(ctx, pipeline) + _subscription(ctx, pipeline)
        checks += _mappings(ctx, pipeline)
    return checks + _parameters(ctx) + _gmail(ctx) + _probe(ctx)


@click.command()
@click.pass_obj
def health(ctx: Context) -> None:
    """HEALTHY, DEGRADED or UNHEALTHY with each reason (exit 0, 1, 1)."""
    checks = run_checks(ctx)
    overall = max((c.level for c in checks), default=Level.HEALTHY)
    rows = [c.row() for c in sorted(checks, key=lambda c: -c.level)]
    emit(
        ctx.as_json,
        {"status": overall.name, "checks": rows},
        rows=rows,
        columns=["level", "area", "detail"],
    )
    say(ctx.as_json, f"\n{overall.name}")
    if overall is not Level.HEALTHY:
        raise Finding(f"{overall.name}: see the reasons above")
