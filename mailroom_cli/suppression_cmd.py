"""``mailroom suppression``: list, check, add and remove over the one suppression list.

Audit records carry the address's hash, never the address.
"""

from __future__ import annotations

from collections.abc import Callable
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
    emit(ctx.as_json, rows, columns=columns, empty="no suppressed addresses")


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
    """Suppress ADDRESS (here and on SES's account-level list)."""
    from mailroom_cli.ses_sync import ses_suppressions

    changed = ctx.suppression.add(address, reason=reason, source="operator")
    ses = "unchanged"
    if changed:  # only what our list took: the two lists must not disagree
        ses = _sync(ctx, lambda: ses_suppressions(ctx).put(normalise(address), reason=reason))
    _report(ctx, address, "suppression.add", reason, changed, "suppressed", ses=ses)


@suppression.command()
@click.argument("address", type=ADDRESS)
@click.option("--reason", required=True, help="Why (audited).")
@click.pass_obj
def remove(ctx: Context, address: str, reason: str) -> None:
    """Make ADDRESS sendable again (here and on SES's account-level list)."""
    from mailroom_cli.ses_sync import ses_suppressions

    changed = ctx.suppression.remove(address, source="operator")
    ses = "unchanged"
    if changed:
        ses = _sync(ctx, lambda: ses_suppressions(ctx).delete(normalise(address)))
    _report(ctx, address, "suppression.remove", reason, changed, "sendable again", ses=ses)


def _sync(ctx: Context, change: Callable[[], object]) -> str:
    """Apply ``change`` to SES's account-level list; what happened, for the audit record.

    Ours is the list both providers honour before sending, so a failure here is reported
    (and audited), not fatal: the operator re-runs the command once SES answers.
    """
    try:
        change()
    except Exception as err:
        code = getattr(err, "response", {}).get("Error", {}).get("Code") or type(err).__name__
        click.echo(f"warning: SES's suppression list not updated ({code}); run again", err=True)
        return f"not updated: {code}"[:100]
    return "updated"


def _report(
    ctx: Context, address: str, action: str, reason: str, changed: bool, what: str, *, ses: str
) -> None:
    if not changed:
        raise Finding(f"{normalise(address)}: a newer change holds; nothing changed")
    ctx.record(action, reason=reason, address_hash=hash_id(normalise(address)) or "", ses=ses)
    emit(ctx.as_json, {"address": normalise(address), "changed": True, "state": what})
    say(ctx.as_json, f"{normalise(address)}: {what}")
