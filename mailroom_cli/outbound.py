"""``mailroom outbound provider``: show the provider switch, force a provider, or go back to
automatic failover. Every change is audited with the operator's reason.
"""

from __future__ import annotations

from dataclasses import asdict

import click

from chalicelib.mail.failover import ProviderSwitch
from chalicelib.platform.settings import OUTBOUND_PROVIDERS
from mailroom_cli.console import emit, say
from mailroom_cli.context import Context


def _switch(ctx: Context) -> ProviderSwitch:
    return ProviderSwitch(ctx.settings.state_table, client=ctx.client("dynamodb"))


@click.group()
def outbound() -> None:
    """Outbound mail: which provider sends."""


@outbound.group()
def provider() -> None:
    """The provider switch shared by every sender (show, set NAME, auto)."""


@provider.command()
@click.pass_obj
def show(ctx: Context) -> None:
    """The switch: mode, the provider that is down, reason and since when."""
    state = _switch(ctx).read()
    row = {**asdict(state), "mode": state.mode, "active": state.active}
    emit(ctx.as_json, row)
    down = f"{state.down} is down" if state.down else "every provider up"
    since = f" since {state.since}" if state.since else ""
    say(
        ctx.as_json,
        f"mode {state.mode}; {down}{since}; reason: {state.reason or '-'}"
        f" (by {state.actor or '-'})",
    )


@provider.command("set")
@click.argument("name", type=click.Choice(OUTBOUND_PROVIDERS))
@click.option("--reason", required=True, help="Why (kept on the switch and audited).")
@click.pass_obj
def set_(ctx: Context, name: str, reason: str) -> None:
    """Send every stream through NAME until `auto`."""
    _switch(ctx).force(name, reason=reason, actor=ctx.actor)
    ctx.record("outbound.provider.set", reason=reason, provider=name)
    emit(ctx.as_json, {"mode": f"forced:{name}", "reason": reason})
    say(ctx.as_json, f"outbound mail now goes through {name}")


@provider.command()
@click.option("--reason", required=True, help="Why (kept on the switch and audited).")
@click.pass_obj
def auto(ctx: Context, reason: str) -> None:
    """Back to each stream's order, with automatic failover."""
    _switch(ctx).force(None, reason=reason, actor=ctx.actor)
    ctx.record("outbound.provider.auto", reason=reason)
    emit(ctx.as_json, {"mode": "auto", "reason": reason})
    say(ctx.as_json, "outbound mail follows each stream's provider order again")
