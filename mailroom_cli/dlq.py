"""``mailroom dlq``: status, peek, analyze, redrive, discard and quarantine dead letters."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import click

from mailroom_cli import opsnote, queues
from mailroom_cli.console import ConfigError, Finding, emit, say
from mailroom_cli.context import Context
from mailroom_cli.control import is_stopped
from mailroom_cli.deadletters import DeadLetter, parse, suggest
from mailroom_cli.params import MESSAGE_ID, PIPELINE, RATE
from mailroom_cli.pipelines import Pipeline

# How many dead letters analyze, discard and quarantine look at per DLQ.
SCAN_LIMIT = 1000
# A progress bar from this many messages on.
PROGRESS_FROM = 6


@click.group()
def dlq() -> None:
    """Dead-letter queues: what is there, why, and what to do with it."""


def _reader(ctx: Context) -> Any:
    s3 = ctx.client("s3")
    return lambda bucket, key: s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()


def letters(ctx: Context, message: dict[str, Any]) -> DeadLetter:
    return parse(message, _reader(ctx))


def _dlqs(
    ctx: Context, name: str | None, *, subscription: bool = False
) -> Iterator[tuple[Pipeline, str]]:
    """Each selected pipeline's processing DLQ, or its SNS subscription DLQ."""
    for pipeline in ctx.pipelines(name):
        queue = pipeline.sub_dlq_name(ctx.stage) if subscription else pipeline.dlq_name(ctx.stage)
        url = ctx.queue_url(queue) if queue else None
        if url is not None:
            yield pipeline, url


def _oldest_age(ctx: Context, url: str) -> int | None:
    with queues.held(ctx.client("sqs"), url, limit=10, wait_seconds=0) as found:
        stamps = [int(m.get("Attributes", {}).get("SentTimestamp", "0")) for m in found]
    if not stamps:
        return None
    return int(datetime.now(UTC).timestamp() - min(stamps) / 1000)


def _queue_age(ctx: Context, name: str) -> int | None:
    """ApproximateAgeOfOldestMessage from CloudWatch (not peeked: Lambda consumes it)."""
    if ctx.target.local:
        return None
    now = datetime.now(UTC)
    points = (
        ctx.client("cloudwatch")
        .get_metric_statistics(
            Namespace="AWS/SQS",
            MetricName="ApproximateAgeOfOldestMessage",
            Dimensions=[{"Name": "QueueName", "Value": name}],
            StartTime=now.timestamp() - 600,
            EndTime=now.timestamp(),
            Period=300,
            Statistics=["Maximum"],
        )
        .get("Datapoints", [])
    )
    return int(max(p["Maximum"] for p in points)) if points else None


def queue_status(ctx: Context, pipeline: Pipeline) -> dict[str, Any]:
    """Depths and ages of ``pipeline``'s queue, DLQ and subscription DLQ."""
    sqs = ctx.client("sqs")
    source = pipeline.queue_name(ctx.stage)
    row: dict[str, Any] = {"pipeline": pipeline.name}
    url = ctx.queue_url(source)
    if url is not None:
        depth = queues.counts(sqs, url)
        row.update(queued=depth["visible"], in_flight=depth["in_flight"])
        row["oldest_s"] = _queue_age(ctx, source)
    dlq_url = ctx.queue_url(pipeline.dlq_name(ctx.stage))
    if dlq_url is not None:
        row["dlq"] = queues.counts(sqs, dlq_url)["visible"]
        row["dlq_oldest_s"] = _oldest_age(ctx, dlq_url) if row["dlq"] else None
    sub_name = pipeline.sub_dlq_name(ctx.stage)
    sub_url = ctx.queue_url(sub_name) if sub_name else None
    if sub_url is not None:
        row["subscription_dlq"] = queues.counts(sqs, sub_url)["visible"]
    return row


@dlq.command()
@click.pass_obj
def status(ctx: Context) -> None:
    """Per pipeline: queue depth, in flight, oldest age; DLQ depth and oldest age.

    The subscription DLQ (SNS could not deliver: topology, F4) is apart from the
    processing DLQ (the handler gave up: F5)."""
    rows = [queue_status(ctx, p) for p in ctx.pipelines()]
    processing = ["pipeline", "queued", "in_flight", "oldest_s", "dlq", "dlq_oldest_s"]
    emit(ctx.as_json, rows, columns=processing)
    topology = [r for r in rows if "subscription_dlq" in r]
    if topology and not ctx.as_json:
        click.echo("\nSNS subscription DLQs (topology failures, F4):")
        emit(False, None, rows=topology, columns=["pipeline", "subscription_dlq"])


@dlq.command()
@click.argument("pipeline", required=False, type=PIPELINE)
@click.option(
    "-n",
    "limit",
    default=10,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="At most this many per DLQ.",
)
@click.option("--body", is_flag=True, help="Show message bodies too.")
@click.option("--subscription", is_flag=True, help="The SNS subscription DLQ (F4) instead.")
@click.pass_obj
def peek(ctx: Context, pipeline: str | None, limit: int, body: bool, subscription: bool) -> None:
    """Show dead letters without consuming them (they are visible again at once)."""
    rows = []
    for found, url in _dlqs(ctx, pipeline, subscription=subscription):
        with queues.held(ctx.client("sqs"), url, limit=limit) as messages:
            for message in messages:
                letter = letters(ctx, message)
                row = {"pipeline": found.name, **letter.summary()}
                if body:
                    row["body"] = letter.body
                rows.append(row)
    columns = ["pipeline", "message_id", "group", "attempts", "first_seen", "error_class"]
    columns += ["reason", "disposition", "business_ids"]
    if body:
        columns.append("body")
    emit(ctx.as_json, rows, columns=columns, empty="no dead letters")


def completed(ctx: Context, pipeline: Pipeline, letter: DeadLetter) -> bool:
    """Whether ``letter``'s business key is already COMPLETED (a redrive would be a no-op)."""
    for business in letter.business_ids:
        if business.kind == "key":
            key = business.value
        elif pipeline.key_prefix:
            key = f"{pipeline.key_prefix}{business.value}"
        else:
            continue
        record = ctx.key_record(key)
        if record is not None and record.get("status") == "COMPLETED":
            return True
    return False


@dlq.command()
@click.argument("pipeline", required=False, type=PIPELINE)
@click.pass_obj
def analyze(ctx: Context, pipeline: str | None) -> None:
    """Group dead letters by error signature, with counts and a suggested disposition."""
    groups: dict[tuple[str, str, str, bool], dict[str, Any]] = {}
    for found, url in _dlqs(ctx, pipeline):
        with queues.held(ctx.client("sqs"), url, limit=SCAN_LIMIT) as messages:
            for message in messages:
                letter = letters(ctx, message)
                done = completed(ctx, found, letter)
                error, reason = letter.signature
                group = groups.setdefault(
                    (found.name, error, reason, done),
                    {
                        "pipeline": found.name,
                        "error_class": error,
                        "reason": reason,
                        "count": 0,
                        "first_seen": letter.first_seen,
                        "last_seen": letter.first_seen,
                        "suggestion": suggest(letter, completed=done),
                        "ids": [],
                    },
                )
                group["count"] += 1
                group["first_seen"] = min(group["first_seen"], letter.first_seen)
                group["last_seen"] = max(group["last_seen"], letter.first_seen)
                group["ids"].append(letter.message_id)
                group.setdefault("mailboxes", set()).update(
                    b.value for b in letter.business_ids if b.kind == "mailbox"
                )
    rows = sorted(groups.values(), key=lambda g: -int(g["count"]))
    for row in rows:
        suggestion = row.pop("suggestion")
        row.update(action=suggestion.action, why=suggestion.why)
        row["mailboxes"] = " ".join(sorted(row.get("mailboxes", ()))) or None
    columns = ["pipeline", "count", "error_class", "reason", "mailboxes", "first_seen"]
    columns.append("last_seen")
    emit(ctx.as_json, rows, columns=[*columns, "action", "why"], empty="no dead letters")


@dlq.command()
@click.argument("pipeline", required=False, type=PIPELINE)
@click.option(
    "--id",
    "ids",
    multiple=True,
    type=MESSAGE_ID,
    help="SQS message id or business id (repeatable).",
)
@click.option("--error-class", help="Only dead letters of this error class.")
@click.option("--reason-contains", help="Only dead letters whose reason contains this text.")
@click.option("--max", "max_messages", default=1000, show_default=True, type=click.IntRange(1))
@click.option(
    "--rate",
    default=10.0,
    show_default=True,
    type=RATE,
    help="Messages per second.",
)
@click.option("--dry-run", is_flag=True, help="Show what would move; move nothing.")
@click.option("--force", is_flag=True, help="Redrive even while the pipeline is stopped.")
@click.option(
    "--subscription", is_flag=True, help="From the SNS subscription DLQ (F4, once fixed)."
)
@click.option("--reason", default="redrive after the cause healed", help="For the audit record.")
@click.option(
    "--ops-note",
    "root_cause",
    help="Root cause: write the post-incident note (time, cause, resolution, count, redrive "
    "time) to the ops FreeScout mailbox, once.",
)
@click.option("--resolution", help="For the ops note (default: --reason).")
@click.pass_obj
def redrive(
    ctx: Context,
    pipeline: str | None,
    ids: tuple[str, ...],
    error_class: str | None,
    reason_contains: str | None,
    max_messages: int,
    rate: float,
    dry_run: bool,
    force: bool,
    subscription: bool,
    reason: str,
    root_cause: str | None = None,
    resolution: str | None = None,
) -> None:
    """Move dead letters back to their source queue (same group, fresh deduplication id)."""
    if root_cause is not None and not dry_run:
        opsnote.mailbox_id(ctx)  # refused before anything moves, not after

    def select(letter: DeadLetter) -> bool:
        return (
            (not ids or any(letter.matches(i) for i in ids))
            and (error_class is None or letter.error_class == error_class)
            and (reason_contains is None or reason_contains in (letter.reason or ""))
        )

    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    sources = list(_dlqs(ctx, pipeline, subscription=subscription))
    for found, _ in sources:
        if not dry_run and not force and _stopped(ctx, found):
            raise ConfigError(
                f"pipeline {found.name!r} is stopped: `mailroom resume {found.name}` first, "
                "or pass --force to queue the mail for when it resumes"
            )
    for found, dlq_url in sources:
        source_url = ctx.queue_url(found.queue_name(ctx.stage))
        assert source_url is not None  # ctx.pipelines only lists deployed pipelines
        sqs = ctx.client("sqs")
        expected = min(max_messages, queues.counts(sqs, dlq_url)["visible"])
        if expected == 0:
            continue
        kwargs: dict[str, Any] = {
            "parse": lambda m: letters(ctx, m),
            "select": select,
            "max_messages": max_messages - sum(r["moved"] for r in rows),
            "pacer": queues.Pacer(rate),
            "dry_run": dry_run,
        }
        if expected >= PROGRESS_FROM and not ctx.as_json and not dry_run:
            with click.progressbar(length=expected, label=f"redrive {found.name}") as bar:
                result = queues.redrive(sqs, dlq_url, source_url, progress=bar.update, **kwargs)
        else:
            result = queues.redrive(sqs, dlq_url, source_url, **kwargs)
        moved_ids = [letter.message_id for letter in result.moved]
        not_moved = result.not_moved
        rows.append(
            {
                "pipeline": found.name,
                "moved": len(result.moved),
                "failed": sum(1 for fate in not_moved if fate.fate == queues.FAILED),
                "held": sum(1 for fate in not_moved if fate.fate == queues.SKIPPED),
                "skipped": result.skipped,
                "requested_rate": rate,
                "achieved_rate": round(result.achieved_rate, 2) if result.achieved_rate else None,
                "ids": moved_ids,
                "entries": [fate.as_row() for fate in result.fates],
                "left_in_both": result.left_in_both,
            }
        )
        if result.moved and not dry_run:
            ctx.record(
                "dlq.redrive",
                reason=reason,
                count=len(result.moved),
                pipeline=found.name,
                source="subscription-dlq" if subscription else "dlq",
                ids=",".join(moved_ids[:50]),
                business_ids=" ".join(
                    b.value
                    for letter in result.moved[:50]
                    for b in letter.business_ids
                    if b.kind != "key"
                ),
            )
        if result.moved and not dry_run and root_cause is not None:
            rows[-1]["ops_note"] = opsnote.write(
                ctx,
                pipeline=found.name,
                moved=result.moved,
                root_cause=root_cause,
                resolution=resolution or reason,
            )
            say(
                ctx.as_json,
                f"{found.name}: ops note in FreeScout conversation {rows[-1]['ops_note']}",
            )
        if result.left_in_both:
            # Sent but not deleted: the DLQ copy is a duplicate the idempotency key absorbs.
            say(
                ctx.as_json, f"{found.name}: still in the DLQ too: {', '.join(result.left_in_both)}"
            )
        for fate in not_moved:
            why = f"{fate.code}: {fate.detail}" if fate.fate == queues.FAILED else fate.detail
            left = f"{found.name}: {fate.message_id} {fate.fate} ({why}), left in the DLQ"
            say(ctx.as_json, left)
        if result.error:
            failed.append(f"{found.name}: {result.error}")
        elif not_moved:
            failed.append(f"{found.name}: {len(not_moved)} left in the DLQ (see each entry's fate)")
    verb = "would move" if dry_run else "moved"
    emit(
        ctx.as_json,
        rows,
        columns=["pipeline", "moved", "failed", "held", "skipped", "achieved_rate"],
        empty="nothing to redrive",
    )
    if dry_run:
        for row in rows:
            say(ctx.as_json, f"{row['pipeline']}: {verb} {', '.join(row['ids']) or 'nothing'}")
    if failed:
        raise Finding("; ".join(failed))


def _stopped(ctx: Context, pipeline: Pipeline) -> bool:
    return is_stopped(ctx, pipeline)


def settle_options(command: Callable[..., None]) -> Callable[..., None]:
    """The context and options of a command that settles named dead letters for good."""
    ids = click.option(
        "--id",
        "ids",
        multiple=True,
        required=True,
        type=MESSAGE_ID,
        help="SQS message id or business id.",
    )
    reason = click.option("--reason", required=True, help="Why (kept in the audit record).")
    return ids(reason(click.pass_obj(command)))


def _settle(ctx: Context, ids: tuple[str, ...], reason: str, *, action: str, prefix: str) -> None:
    """Keep a copy of each named dead letter under ``prefix``, audit it, delete it."""
    wanted = set(ids)
    rows = []
    sqs, s3 = ctx.client("sqs"), ctx.client("s3")
    day = datetime.now(UTC).date().isoformat()
    every = [*_dlqs(ctx, None), *_dlqs(ctx, None, subscription=True)]
    for found, url in every:
        with queues.held(sqs, url, limit=SCAN_LIMIT) as messages:
            for message in messages:
                letter = letters(ctx, message)
                hit = next((i for i in wanted if letter.matches(i)), None)
                if hit is None:
                    continue
                digest = hashlib.sha256(letter.body.encode()).hexdigest()
                key = f"{prefix}/{day}/{letter.message_id}.json"
                copy = {
                    "pipeline": found.name,
                    "reason": reason,
                    **letter.summary(),
                    "attributes": letter.attributes,
                    "body": letter.body,
                }
                s3.put_object(
                    Bucket=ctx.settings.mail_bucket,
                    Key=key,
                    Body=json.dumps(copy).encode(),
                    ContentType="application/json",
                )
                ctx.record(
                    f"dlq.{action}",
                    reason=reason,
                    pipeline=found.name,
                    message_id=letter.message_id,
                    business_id=letter.summary()["business_id"] or "-",
                    body_sha256=digest,
                    s3_key=key,
                )
                sqs.delete_message(QueueUrl=url, ReceiptHandle=letter.receipt_handle)
                wanted.discard(hit)
                rows.append(
                    {
                        "pipeline": found.name,
                        "message_id": letter.message_id,
                        "body_sha256": digest,
                        "kept_at": key,
                    }
                )
    emit(ctx.as_json, rows, columns=["pipeline", "message_id", "body_sha256", "kept_at"])
    if wanted:
        raise Finding(f"not found in any DLQ: {', '.join(sorted(wanted))}")


@dlq.command()
@settle_options
def discard(ctx: Context, ids: tuple[str, ...], reason: str) -> None:
    """Delete dead letters for good; a copy stays under discarded/ in the mail bucket."""
    _settle(ctx, ids, reason, action="discard", prefix="discarded")


@dlq.command()
@settle_options
def quarantine(ctx: Context, ids: tuple[str, ...], reason: str) -> None:
    """Move dead letters' bodies to quarantine/ in the mail bucket, then delete them."""
    _settle(ctx, ids, reason, action="quarantine", prefix="quarantine")
