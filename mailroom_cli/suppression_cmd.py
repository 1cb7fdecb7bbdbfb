"""``mailroom suppression``: list, check, add and remove over the one suppression list.

Audit records carry the address's hash, never the address.
"""

from __future__ import annotations

from dataclasses import asdict

import click

from chalicelib.mail.suppression import normalise
from chalicelib.platform.logging import hash_id
from mailroom_cli.console import Finding, emit, say
from mailroom_cli.context import Context
from mailroom_cli.params import ADDRESS


@click.group()
def suppression() -> None:
    """Addresses mailroom will not send to."""


@suppression.command("list")
@click.pass_obj
def list_(ctx: Context) -> None:
    """Every suppressed address, with reason, source and time."""
    rows = [asdict(s) for s in ctx.suppression.list()]
    columns = ["address", "reason", "source", "suppressed_at"]
    emit(ctx.as_json, rows, rows=rows, columns=columns, empty="no suppressed addresses")


@suppression.command()
@click.argument("address", type=ADDRESS)
@click.pass_obj
def check(ctx: Context, address: str) -> None:
    """Whether ADDRESS is suppressed (exit 1 if it is)."""
    blocked = bool(ctx.suppression.suppressed([address]))
    emit(ctx.as_json, {"address": normalise(address), "suppressed": blocked})
    say(ctx.as_json, f"{normalise(address)}: {'SUPPRESSED' if blocked else 'sendable'}")
    if blocked:
        raise Finding(f"{normalise(address)} is suppressed")


@suppression.command()
@click.argument("address", type=ADDRESS)
@click.option("--reason", required=True, help="Why (kept with the entry and audited).")
@click.pass_obj
def add(ctx: Context, address: str, reason: str) -> None:
    """Suppress ADDRESS."""
    changed = ctx.suppression.add(address, reason=reason, source="operator")
    _report(ctx, address, "suppression.add", reason, changed, "suppressed")


@suppression.command()
@click.argument("address", type=ADDRESS)
@click.option("--reason", required=True, help="Why (audited).")
@click.pass_obj
def remove(ctx: Context, address: str, reason: str) -> None:
    """Make ADDRESS sendable again."""
    changed = ctx.suppression.remove(address, source="operator")
    _report(ctx, address, "suppression.remove", reason, changed, "sendable again")


def _report(ctx: Context, address: str, action: str, reason: str, changed: bool, what: str) -> None:
    if not changed:
        raise Finding(f"{normalise(address)}: a newer change holds; nothing changed")
    ctx.record(action, reason=reason, address_hash=hash_id(normalise(address)) or "")
    emit(ctx.as_json, {"address": normalise(address), "changed": True, "state": what})
    say(ctx.as_json, f"{normalise(address)}: {what}")
