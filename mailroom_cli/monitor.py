"""``mailroom dlq monitor [PIPELINE] [--interval S]``: the live view of the dead-letter queues.

Every interval, per DLQ: its depth, the age of its oldest message and how many arrived since
the last look (depth grown; a redrive or discard in between shows as a drop, not arrivals).
Runs until Ctrl-C, or for ``--count`` rounds (for scripts; with ``--json`` one JSON line per
round).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

from mailroom_cli import queues
from mailroom_cli.console import table
from mailroom_cli.context import Context
from mailroom_cli.dlq import _dlqs, _oldest_age, dlq

COLUMNS = ["at", "pipeline", "depth", "oldest_s", "arrived"]


def snapshot(ctx: Context, pipeline: str | None, before: dict[str, int]) -> list[dict[str, Any]]:
    """One round: a row per DLQ; ``before`` (pipeline → depth) is updated in place."""
    at = datetime.now(UTC).isoformat(timespec="seconds")
    rows = []
    sqs = ctx.client("sqs")
    for found, url in _dlqs(ctx, pipeline):
        depth = queues.counts(sqs, url)["visible"]
        previous = before.get(found.name)
        rows.append(
            {
                "at": at,
                "pipeline": found.name,
                "depth": depth,
                "oldest_s": _oldest_age(ctx, url) if depth else None,
                "arrived": None if previous is None else max(0, depth - previous),
            }
        )
        before[found.name] = depth
    return rows


@dlq.command()
@click.argument("pipeline", required=False)
@click.option(
    "--interval", default=30.0, show_default=True, type=click.FloatRange(min=1.0), help="Seconds."
)
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many rounds.")
@click.pass_obj
def monitor(ctx: Context, pipeline: str | None, interval: float, count: int | None) -> None:
    """Watch DLQ depth, oldest age and arrivals per interval, until Ctrl-C."""
    watch(ctx, pipeline, interval=interval, count=count, sleep=time.sleep)


def watch(
    ctx: Context,
    pipeline: str | None,
    *,
    interval: float,
    count: int | None,
    sleep: Callable[[float], None],
) -> None:
    before: dict[str, int] = {}
    rounds = 0
    try:
        while count is None or rounds < count:
            rows = snapshot(ctx, pipeline, before)
            if ctx.as_json:
                click.echo(json.dumps(rows, default=str))
            else:
                click.echo(table(rows, COLUMNS) + "\n")
            rounds += 1
            if count is None or rounds < count:
                sleep(interval)  # the operator's chosen pace, not synchronisation
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
