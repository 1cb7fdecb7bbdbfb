"""``mailroom audit list``: who did what, when and why (every destructive command writes one)."""

from __future__ import annotations

from dataclasses import asdict

import click

from mailroom_cli.context import Context
from mailroom_cli.output import emit


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
