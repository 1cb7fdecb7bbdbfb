"""``mailroom trace ID``: every stage mailroom knows about one email, and its log lines;
``mailroom trace ADDRESS --since 7d``: every email to or from an address;
``mailroom audit list``: who did what to which messages, when and why.

ID is any id of the email: Postmark MessageID, RFC Message-ID (with or without angle
brackets), SES message id, provider outbound message id, correlation id, SQS message id of a
dead letter, FreeScout conversation id, Gmail message id. The three answers of a delivery
investigation (did we accept it, did the provider accept it, what did the recipient's server
say) are computed from the records printed under them.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from chalicelib.mail.delivery_log import DeliveryStatus
from chalicelib.mail.suppression import normalise
from chalicelib.mail.trace_index import TraceIndex
from chalicelib.platform.logging import hash_id
from mailroom_cli.console import ConfigError, Finding, emit, say
from mailroom_cli.context import Context
from mailroom_cli.params import ADDRESS, MESSAGE_ID
from mailroom_cli.pipelines import PIPELINES
from mailroom_cli.story import Story, index, spellings

LOG_LINES = 50
QUERY_SECONDS = 60
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400, "": 3600}


def duration(value: str) -> timedelta:
    """``"7d"``, ``"12h"``, ``"30m"``; a bare number is hours."""
    found = _DURATION.match(value)
    if found is None:
        raise ConfigError(f"--since {value!r}: give a number with s, m, h, d or w (e.g. 7d)")
    return timedelta(seconds=int(found.group(1)) * _UNITS[found.group(2)])


def log_lines(
    ctx: Context, ident: str, since: timedelta, ids: set[str] | None = None
) -> list[dict[str, Any]]:
    """Log lines of the email: by the hash of any of its ids, or its correlation id."""
    values = {ident, *(ids or ())}
    digests = {h for v in values for s in spellings(v) if (h := hash_id(s))}
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
            if isinstance(line, dict) and (
                line.get("message_id_hash") in digests
                or str(line.get("correlation_id") or "\0") in values
            ):
                lines.append(line)
        return lines[-LOG_LINES:]
    return _insights(ctx, values, digests, since)


def _quoted(values: set[str]) -> str:
    return ", ".join(f"'{v.replace(chr(39), '')}'" for v in sorted(values))


def _insights(
    ctx: Context, values: set[str], digests: set[str], since: timedelta
) -> list[dict[str, Any]]:
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
            f"correlation_id, trace_id | filter message_id_hash in [{_quoted(digests)}] or "
            f"correlation_id in [{_quoted(values)}] | sort @timestamp asc | limit {LOG_LINES}"
        ),
    )["queryId"]
    deadline = time.monotonic() + QUERY_SECONDS
    while time.monotonic() < deadline:
        answer = logs.get_query_results(queryId=query_id)
        if answer["status"] in {"Complete", "Failed", "Cancelled", "Timeout"}:
            return [{f["field"]: f["value"] for f in row} for row in answer.get("results", [])]
        time.sleep(1)  # Logs Insights answers asynchronously
    return []


def _steps(report: dict[str, Any], stage: str) -> list[dict[str, Any]]:
    return [s for e in report.get("emails", []) for s in e["story"] if s["stage"] == stage]


def _delivered(step: dict[str, Any]) -> str:
    details = step["details"]
    action = details.get("action", "?")
    shown = {k: v for k, v in details.items() if k not in {"action", "key", "recipient_hash"}}
    return f"{action} {step['outcome']}: " + ", ".join(f"{k}={v}" for k, v in shown.items())


def answers(report: dict[str, Any]) -> dict[str, str]:
    """The three questions, answered from what the trace found (and printed under them)."""
    keys, history = report["idempotency"], report["delivery_log"]
    statuses = [e["status"] for e in history]
    received, routed, done = (_steps(report, s) for s in ("received", "routed", "delivered"))
    succeeded_in_logs = any(
        str(line.get("outcome", "")) in {"success", "imported", "bounced", "routed", "sent"}
        for line in report.get("logs", [])
    )
    evidence = (
        received
        or routed
        or done
        or keys
        or history
        or report["dead_letters"]
        or report.get("conversation_id")
        or report["audit"]
    )
    if evidence:
        accepted = "yes"
        if received:
            first = received[0]
            accepted += f" (received via {first['details'].get('source', '?')} at {first['at']})"
    elif succeeded_in_logs:
        accepted = "yes (its log lines say so; no record kept)"
    else:
        accepted = "no record of it"
    if report["dead_letters"]:
        accepted += f" (dead-lettered: {report['dead_letters'][0]['reason']})"
    results = [k.get("result") or {} for k in keys if k.get("status") == "COMPLETED"]
    provider = "; ".join(_delivered(step) for step in done) or None
    if provider is None and report.get("conversation_id"):
        provider = f"freescout conversation {report['conversation_id']}"
    if provider is None:
        provider = next((", ".join(f"{k}={v}" for k, v in r.items()) for r in results if r), None)
    if provider is None and DeliveryStatus.SENT in statuses:
        provider = "yes (sent)"
    if provider is None:
        dropped = [s for s in routed if s["outcome"] in {"dropped", "no_rule"}]
        pending = [s for s in routed if s["outcome"] not in {"dropped", "no_rule"}]
        if dropped:
            provider = "no: " + "; ".join(
                f"{s['outcome']} (rule {s['details'].get('rule', '-')})" for s in dropped
            )
        elif report["dead_letters"]:
            provider = "no (dead-lettered)"
        elif pending:
            provider = "not yet: routed to " + ", ".join(s["outcome"] for s in pending)
    final = next(
        (e for e in reversed(history) if e["status"] in {"delivered", "bounced", "complained"}),
        None,
    )
    recipient = "no word yet"
    if final is not None:
        detail = final["details"].get("reason") or final["details"].get("details") or ""
        recipient = f"{final['status']} at {final['at']} {detail}".strip()
    elif received and done:
        recipient = "received mail: delivered to its mailbox (no server of ours to answer)"
    return {
        "did we accept it": accepted,
        "did the provider accept it": provider or "no",
        "what did the recipient's server say": recipient,
    }


@click.command()
@click.argument("ident", metavar="ID", type=MESSAGE_ID)
@click.option(
    "--since",
    default="24h",
    show_default=True,
    help="How far back: logs searched, and mail listed for an address (7d, 12h, 30m).",
)
@click.option(
    "--recipient", type=ADDRESS, help="The recipient address (optional: the index knows it)."
)
@click.pass_obj
def trace(ctx: Context, ident: str, since: str, recipient: str | None) -> None:
    """Everything mailroom knows about one email, by any of its ids; or, for an address,
    every email to or from it."""
    from mailroom_cli.sent_trace import provider_history, resolve, sent_answers

    window = duration(since)
    asked = ident
    ident, _ = resolve(ctx, ident)  # a provider's outbound message id → our correlation id
    story = Story(ctx, ident, recipient)
    report = story.gather()
    if _is_address(ident) and not report["emails"] and not report["dead_letters"]:
        _by_address(ctx, ident, window)
        return
    report["delivery_log"] += provider_history(ctx, report["delivery_log"])
    ids = {v for values in report["ids"].values() for v in values}
    report["logs"] = log_lines(ctx, ident, window, ids)
    report["traces"] = trace_links(ctx, report["logs"])
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
        for k in (
            "emails",
            "idempotency",
            "conversation_id",
            "delivery_log",
            "dead_letters",
            "audit",
            "logs",
        )
    ):
        raise Finding(f"nothing known about {ident!r}")


def _is_address(ident: str) -> bool:
    value = ident.strip()
    return "@" in value and not value.startswith("<") and " " not in value


def _by_address(ctx: Context, address: str, window: timedelta) -> None:
    store: TraceIndex = index(ctx)
    hits = store.by_address(address, datetime.now(UTC) - window)
    rows = []
    for hit in hits:
        steps = store.story(hit.email)
        last = steps[-1] if steps else {"stage": "-", "outcome": "-"}
        row = {
            "at": hit.at,
            "role": hit.kind,
            "email": hit.email,
            "last_step": f"{last['stage']} {last['outcome']}",
            "story": steps,
        }
        source, _, correlation_id = hit.email.partition(":")
        if source == "outbound":  # what the provider said since: delivered, bounced, ...
            history = [e for e in ctx.delivery_log.history(correlation_id) if e.status != "sent"]
            if history:
                row["last_step"] = f"{history[-1].status.value} at {history[-1].at}"
            row["delivery_log"] = [{**asdict(e), "status": e.status.value} for e in history]
        rows.append(row)
    emit(
        ctx.as_json,
        {"address_hash": hash_id(normalise(address)), "since": str(window), "emails": rows},
        rows=rows,
        columns=["at", "role", "email", "last_step"],
        empty=f"no mail to or from {address} in the last {window}",
    )
    if not rows:
        raise Finding(f"no mail to or from {address!r} in the last {window}")


def trace_links(ctx: Context, lines: list[dict[str, Any]]) -> list[str]:
    """X-Ray console links of the invocations that logged about this email."""
    found = dict.fromkeys(str(line["trace_id"]) for line in lines if line.get("trace_id"))
    region = ctx.target.region
    return [
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#xray:traces/{trace_id}"
        for trace_id in found
    ]


def _print(report: dict[str, Any]) -> None:
    say(False, f"trace {report['id']} (message_id_hash {report['message_id_hash']})")
    for question, answer in {**report["answers"], **report.get("sent_answers", {})}.items():
        say(False, f"  {question}? {answer}")
    known = ", ".join(f"{k}={v}" for k, vs in report["ids"].items() if k != "given" for v in vs)
    if known:
        say(False, f"known as {known}")
    for email in report["emails"]:
        say(False, f"email {email['email']} (found by its {email['found_by']} id)")
        for step in email["story"]:
            details = " ".join(f"{k}={v}" for k, v in sorted(step["details"].items()))
            say(False, f"  {step['at']} {step['stage']} {step['outcome']} {details}".rstrip())
    for record in report["idempotency"]:
        say(
            False, f"idempotency {record['key']}: {record.get('status')} {record.get('result', '')}"
        )
    if report["conversation_id"]:
        say(False, f"FreeScout conversation {report['conversation_id']}")
    for event in report["delivery_log"]:
        say(False, f"delivery {event['at']} {event['status']} {event['details']}")
    for letter in report["dead_letters"]:
        say(
            False,
            f"DLQ {letter['pipeline']}: {letter['error_class']}: {letter['reason']} "
            f"(sqs {letter['message_id']}, redriven {letter['redrive_count']}x)",
        )
    for record in report["audit"]:
        say(
            False,
            f"audit {record['at']} {record['action']} by {record['actor']}: {record['reason']}",
        )
    for link in report["traces"]:
        say(False, f"X-Ray {link}")
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
