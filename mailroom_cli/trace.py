"""``mailroom trace ID``: every stage mailroom knows about one email, and its log lines;
``mailroom audit list``: who did what to which messages, when and why.

ID is a Postmark MessageID, an RFC Message-ID, a correlation id or an SES message id. The
answer covers the three questions of a delivery investigation: did we accept it, did the
provider accept it, and what did the recipient's server say.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from chalicelib.mail.delivery_log import DeliveryStatus
from chalicelib.mail.inbound_email import EmailSource, delivery_key_for
from chalicelib.platform.logging import hash_id
from mailroom_cli import queues
from mailroom_cli.console import Finding, emit, say
from mailroom_cli.context import Context
from mailroom_cli.dlq import SCAN_LIMIT, letters
from mailroom_cli.params import ADDRESS, HOURS, MESSAGE_ID
from mailroom_cli.pipelines import PIPELINES

LOG_LINES = 50
QUERY_SECONDS = 60


def _idempotency(ctx: Context, ident: str, recipient: str | None) -> list[dict[str, Any]]:
    candidates = [(p.name, f"{p.key_prefix}{ident}") for p in PIPELINES if p.key_prefix]
    if recipient:
        # Inbound deliveries are keyed per RFC Message-ID (or provider id), recipient, action.
        rfc = ident.strip().lower()
        for source in EmailSource:
            for action in ("freescout", "gmail", "bounce"):
                key = delivery_key_for(
                    rfc if "@" in rfc else None, source, ident, recipient, action
                )
                candidates.append((f"deliver:{action}", key))
    found = []
    for name, key in dict.fromkeys(candidates):
        record = ctx.key_record(key)
        if record is not None:
            found.append({"pipeline": name, "key": key, **record})
    return found


def _conversation(ctx: Context, ident: str) -> str | None:
    rfc = ident.strip().lower()
    rfc = rfc if rfc.startswith("<") else f"<{rfc}>"
    item = (
        ctx.client("dynamodb")
        .get_item(
            TableName=ctx.settings.state_table,
            Key={"PK": {"S": f"MSGID#{rfc}"}, "SK": {"S": "FREESCOUT"}},
        )
        .get("Item")
    )
    return str(item["conversation_id"]["N"]) if item else None


def _dead_letters(ctx: Context, ident: str) -> list[dict[str, Any]]:
    found = []
    for pipeline in ctx.pipelines():
        url = ctx.queue_url(pipeline.dlq_name(ctx.stage))
        if url is None:
            continue
        with queues.held(ctx.client("sqs"), url, limit=SCAN_LIMIT) as messages:
            for message in messages:
                letter = letters(ctx, message)
                if letter.matches(ident):
                    found.append({"pipeline": pipeline.name, **letter.summary()})
    return found


def _audit(ctx: Context, ident: str) -> list[dict[str, Any]]:
    wanted = {ident, hash_id(ident)}
    return [
        asdict(r)
        for r in ctx.audit.list(days=14, limit=1000)
        if wanted & set(r.details.values()) or any(ident in v for v in r.details.values())
    ]


def log_lines(ctx: Context, ident: str, since: timedelta) -> list[dict[str, Any]]:
    digest = hash_id(ident)
    if ctx.target.local:
        path = ctx.target.log_file
        if path is None or not path.exists():
            return []
        lines = []
        for raw in path.read_text(errors="replace").splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if isinstance(line, dict) and digest in (
                line.get("message_id_hash"),
                hash_id(str(line.get("correlation_id") or "")),
            ):
                lines.append(line)
        return lines[-LOG_LINES:]
    return _insights(ctx, ident, digest or "", since)


def _insights(ctx: Context, ident: str, digest: str, since: timedelta) -> list[dict[str, Any]]:
    logs = ctx.client("logs")
    groups = [f"/aws/lambda/{p.function_name(ctx.stage)}" for p in PIPELINES]
    groups.append(f"/aws/lambda/mailroom-{ctx.stage}")  # the API handler
    existing = []
    for group in groups:
        found = logs.describe_log_groups(logGroupNamePrefix=group).get("logGroups", [])
        existing += [g["logGroupName"] for g in found if g["logGroupName"] == group]
    if not existing:
        return []
    now = datetime.now(UTC)
    query_id = logs.start_query(
        logGroupNames=existing,
        startTime=int((now - since).timestamp()),
        endTime=int(now.timestamp()),
        queryString=(
            "fields @timestamp, event_type, outcome, error_class, reason, message_id_hash, "
            f"correlation_id | filter message_id_hash = '{digest}' or correlation_id = "
            f"'{ident.replace(chr(39), '')}' | sort @timestamp asc | limit {LOG_LINES}"
        ),
    )["queryId"]
    deadline = time.monotonic() + QUERY_SECONDS
    while time.monotonic() < deadline:
        answer = logs.get_query_results(queryId=query_id)
        if answer["status"] in {"Complete", "Failed", "Cancelled", "Timeout"}:
            return [{f["field"]: f["value"] for f in row} for row in answer.get("results", [])]
        time.sleep(1)  # Logs Insights answers asynchronously
    return []


def answers(report: dict[str, Any]) -> dict[str, str]:
    """The three questions, answered from what the trace found."""
    keys, history = report["idempotency"], report["delivery_log"]
    statuses = [e["status"] for e in history]
    accepted = "yes" if keys or history or report["dead_letters"] else "no record of it"
    if report["dead_letters"]:
        accepted += f" (dead-lettered: {report['dead_letters'][0]['reason']})"
    results = [k.get("result") or {} for k in keys if k.get("status") == "COMPLETED"]
    provider = next((", ".join(f"{k}={v}" for k, v in r.items()) for r in results if r), None)
    if provider is None and DeliveryStatus.SENT in statuses:
        provider = "yes (sent)"
    final = next(
        (e for e in reversed(history) if e["status"] in {"delivered", "bounced", "complained"}),
        None,
    )
    recipient = "no word yet"
    if final is not None:
        detail = final["details"].get("reason") or final["details"].get("details") or ""
        recipient = f"{final['status']} at {final['at']} {detail}".strip()
    return {
        "did we accept it": accepted,
        "did the provider accept it": provider or "no",
        "what did the recipient's server say": recipient,
    }


@click.command()
@click.argument("ident", metavar="ID", type=MESSAGE_ID)
@click.option(
    "--since", default=24.0, show_default=True, type=HOURS, help="Hours of logs to search."
)
@click.option(
    "--recipient",
    type=ADDRESS,
    help="The recipient address, to find inbound deliveries (keyed per recipient).",
)
@click.pass_obj
def trace(ctx: Context, ident: str, since: float, recipient: str | None) -> None:
    """Everything mailroom knows about one email, by any of its ids."""
    from mailroom_cli.sent_trace import provider_history, resolve, sent_answers

    asked = ident
    ident, _ = resolve(ctx, ident)  # a provider's message id → our correlation id
    report: dict[str, Any] = {
        "id": ident,
        "message_id_hash": hash_id(ident),
        "idempotency": _idempotency(ctx, ident, recipient),
        "conversation_id": _conversation(ctx, ident),
        "delivery_log": [
            {**asdict(e), "status": e.status.value} for e in ctx.delivery_log.history(ident)
        ],
        "dead_letters": _dead_letters(ctx, ident),
        "audit": _audit(ctx, ident),
    }
    report["delivery_log"] += provider_history(ctx, report["delivery_log"])
    report["logs"] = log_lines(ctx, ident, timedelta(hours=since))
    report["answers"] = answers(report)
    sent = sent_answers(report["delivery_log"])
    if sent is not None:  # outbound mail: the provider's side, with its evidence
        report["asked"] = asked
        report["sent_answers"] = sent
    if ctx.as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        _print(report)
    if not any(
        report[k]
        for k in ("idempotency", "conversation_id", "delivery_log", "dead_letters", "audit", "logs")
    ):
        raise Finding(f"nothing known about {ident!r}")


def _print(report: dict[str, Any]) -> None:
    say(False, f"trace {report['id']} (message_id_hash {report['message_id_hash']})")
    for question, answer in {**report["answers"], **report.get("sent_answers", {})}.items():
        say(False, f"  {question}? {answer}")
    for record in report["idempotency"]:
        say(
            False, f"idempotency {record['key']}: {record.get('status')} {record.get('result', '')}"
        )
    if report["conversation_id"]:
        say(False, f"FreeScout conversation {report['conversation_id']} (by RFC Message-ID)")
    for event in report["delivery_log"]:
        say(False, f"delivery {event['at']} {event['status']} {event['details']}")
    for letter in report["dead_letters"]:
        say(False, f"DLQ {letter['pipeline']}: {letter['error_class']}: {letter['reason']}")
    for record in report["audit"]:
        say(
            False,
            f"audit {record['at']} {record['action']} by {record['actor']}: {record['reason']}",
        )
    for line in report["logs"]:
        say(False, "log " + json.dumps(line, separators=(",", ":")))


@click.group()
def audit() -> None:
    """The audit trail of destructive commands."""


@audit.command("list")
@click.option("--days", default=7, show_default=True, type=click.IntRange(1, 400))
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
@click.pass_obj
def list_(ctx: Context, days: int, limit: int) -> None:
    """Audit records of the last DAYS days, newest first."""
    records = [asdict(r) for r in ctx.audit.list(days=days, limit=limit)]
    rows = [
        {**r, "details": " ".join(f"{k}={v}" for k, v in sorted(r["details"].items()))}
        for r in records
    ]
    emit(
        ctx.as_json,
        records,
        rows=rows,
        columns=["at", "action", "actor", "count", "reason", "details"],
        empty="no audit records",
    )
