"""``mailroom routes``: list, add, set, enable, disable, remove and test routing rules.

Rules are validated before they are written (a FreeScout target is a mailbox id, a Gmail
target an address with its authorization in SSM); every change is audited; containers
pick it up within their routes cache time.
"""

from __future__ import annotations

import re
from typing import Any

import click

from chalicelib.mail.routing import RouteAction, RouteRule, candidates, resolve
from chalicelib.platform.logging import hash_id
from mailroom_cli.console import ConfigError, Finding, emit, say
from mailroom_cli.context import Context
from mailroom_cli.params import ADDRESS

ACTIONS = [a.value for a in RouteAction if a is not RouteAction.UNKNOWN]
_ADDRESS = re.compile(r"^[^@\s*]+@[^@\s*]+\.[^@\s*]+$")
_DOMAIN = re.compile(r"^\*@[^@\s*]+\.[^@\s*]+$")
COLUMNS = ["pattern", "action", "target", "enabled", "description", "updated_at", "problem"]


def gmail_parameter(ctx: Context, address: str) -> str:
    """The SSM parameter holding a Gmail mailbox's authorization (the Gmail client's name for
    it where that client is installed; the same convention otherwise)."""
    try:
        from chalicelib.providers.gmail.client import parameter_name  # type: ignore[import-not-found,unused-ignore]

        name = str(parameter_name(address))
    except ImportError:
        # SSM parameter names cannot hold "@".
        name = "gmail/" + address.strip().lower().replace("@", "_at_")
    return ctx.settings.parameter(name)


def parameter_exists(ctx: Context, name: str) -> bool:
    """Whether SSM has ``name`` (DescribeParameters: the value is never read)."""
    found = ctx.client("ssm").describe_parameters(
        ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [name]}]
    )
    return bool(found.get("Parameters"))


def problem(ctx: Context, rule: RouteRule) -> str | None:
    """Why ``rule`` cannot work as written, or None."""
    if rule.pattern != "*" and not (_ADDRESS.match(rule.pattern) or _DOMAIN.match(rule.pattern)):
        return "pattern must be an address, *@domain or *"
    if rule.action is RouteAction.UNKNOWN:
        return f"action must be one of {', '.join(ACTIONS)}"
    if rule.action is RouteAction.FREESCOUT and not (rule.target.isdigit() and int(rule.target)):
        return "a freescout target is a mailbox id (a positive integer)"
    if rule.action is RouteAction.GMAIL:
        if not _ADDRESS.match(rule.target):
            return "a gmail target is a mailbox address"
        if not parameter_exists(ctx, gmail_parameter(ctx, rule.target)):
            return f"no Gmail authorization in SSM ({gmail_parameter(ctx, rule.target)})"
    return None


def audit_pattern(pattern: str) -> str:
    """A pattern fit for an audit record: an address is hashed, its domain kept."""
    if pattern.startswith("*"):
        return pattern
    local, _, domain = pattern.rpartition("@")
    return f"{hash_id(local)}@{domain}"


def _row(ctx: Context, rule: RouteRule) -> dict[str, Any]:
    return {**rule.model_dump(mode="json"), "problem": problem(ctx, rule)}


def _cache_note(ctx: Context) -> None:
    seconds = ctx.settings.routes_cache_seconds
    say(ctx.as_json, f"containers pick this up within {seconds} s (routes cache)")


def _write(ctx: Context, rule: RouteRule, *, action: str, reason: str) -> None:
    found = problem(ctx, rule)
    if found is not None:
        raise ConfigError(f"rule {rule.pattern!r} refused: {found}")
    ctx.routes.put_rule(rule)
    ctx.record(
        action,
        reason=reason,
        pattern=audit_pattern(rule.pattern),
        route_action=rule.action.value,
        target=rule.target,
        enabled=str(rule.enabled),
    )
    emit(ctx.as_json, _row(ctx, rule), rows=[_row(ctx, rule)], columns=COLUMNS)
    _cache_note(ctx)


def _existing(ctx: Context, pattern: str) -> RouteRule:
    rule = ctx.routes.rules().get(pattern.strip().lower())
    if rule is None:
        raise Finding(f"no rule for {pattern!r}")
    return rule


@click.group()
def routes() -> None:
    """Routing rules: which action and target a recipient gets."""


@routes.command("list")
@click.pass_obj
def list_(ctx: Context) -> None:
    """Every rule; PROBLEM flags rules whose target is not usable."""
    rows = [_row(ctx, r) for r in sorted(ctx.routes.rules().values(), key=lambda r: r.pattern)]
    emit(ctx.as_json, rows, rows=rows, columns=COLUMNS, empty="no routing rules")


@routes.command()
@click.argument("pattern")
@click.option("--action", "route_action", required=True, type=click.Choice(ACTIONS))
@click.option("--target", default="", help="FreeScout mailbox id, or Gmail address.")
@click.option("--description", default="")
@click.option("--disabled", is_flag=True, help="Add it disabled.")
@click.option("--reason", default="route added", help="For the audit record.")
@click.pass_obj
def add(
    ctx: Context,
    pattern: str,
    route_action: str,
    target: str,
    description: str,
    disabled: bool,
    reason: str,
) -> None:
    """Add a rule for PATTERN (an address, *@domain or *); refuses to overwrite one."""
    if pattern.strip().lower() in ctx.routes.rules():
        raise ConfigError(f"a rule for {pattern!r} exists: use `mailroom routes set`")
    rule = RouteRule(
        pattern=pattern,
        action=RouteAction(route_action),
        target=target,
        enabled=not disabled,
        description=description,
    )
    _write(ctx, rule, action="route.add", reason=reason)


@routes.command("set")
@click.argument("pattern")
@click.option("--action", "route_action", type=click.Choice(ACTIONS))
@click.option("--target")
@click.option("--description")
@click.option("--reason", default="route changed", help="For the audit record.")
@click.pass_obj
def set_(
    ctx: Context,
    pattern: str,
    route_action: str | None,
    target: str | None,
    description: str | None,
    reason: str,
) -> None:
    """Change an existing rule's action, target or description."""
    rule = _existing(ctx, pattern)
    changes: dict[str, Any] = {}
    if route_action is not None:
        changes["action"] = RouteAction(route_action)
    if target is not None:
        changes["target"] = target
    if description is not None:
        changes["description"] = description
    _write(ctx, rule.model_copy(update=changes), action="route.set", reason=reason)


def _toggle(ctx: Context, pattern: str, *, enabled: bool, reason: str) -> None:
    rule = _existing(ctx, pattern).model_copy(update={"enabled": enabled})
    _write(ctx, rule, action="route.enable" if enabled else "route.disable", reason=reason)


@routes.command()
@click.argument("pattern")
@click.option("--reason", default="route enabled", help="For the audit record.")
@click.pass_obj
def enable(ctx: Context, pattern: str, reason: str) -> None:
    """Enable the rule for PATTERN."""
    _toggle(ctx, pattern, enabled=True, reason=reason)


@routes.command()
@click.argument("pattern")
@click.option("--reason", default="route disabled", help="For the audit record.")
@click.pass_obj
def disable(ctx: Context, pattern: str, reason: str) -> None:
    """Disable the rule for PATTERN (the next candidate wins instead)."""
    _toggle(ctx, pattern, enabled=False, reason=reason)


@routes.command()
@click.argument("pattern")
@click.option("--reason", required=True, help="Why (kept in the audit record).")
@click.pass_obj
def remove(ctx: Context, pattern: str, reason: str) -> None:
    """Remove the rule for PATTERN."""
    rule = _existing(ctx, pattern)
    ctx.client("dynamodb").delete_item(
        TableName=ctx.settings.routes_table,
        Key={"PK": {"S": f"ROUTE#{rule.pattern}"}, "SK": {"S": "RULE#v1"}},
    )
    ctx.record(
        "route.remove",
        reason=reason,
        pattern=audit_pattern(rule.pattern),
        route_action=rule.action.value,
        target=rule.target,
    )
    say(ctx.as_json, f"removed {rule.pattern}")
    emit(ctx.as_json, {"removed": rule.pattern})
    _cache_note(ctx)


@routes.command()
@click.argument("address", type=ADDRESS)
@click.pass_obj
def test(ctx: Context, address: str) -> None:
    """Which rule ADDRESS gets: every candidate tried, and the winner."""
    rules = ctx.routes.rules()
    winner = resolve(address, rules)
    rows = []
    for pattern in candidates(address):
        rule = rules.get(pattern)
        verdict = "no rule" if rule is None else "disabled" if not rule.enabled else "match"
        if winner is not None and rule is winner:
            verdict = "WINNER"
        rows.append(
            {
                "candidate": pattern,
                "rule": verdict,
                "action": rule.action.value if rule else None,
                "target": rule.target if rule else None,
            }
        )
    data = {
        "address": address,
        "candidates": rows,
        "winner": winner.model_dump(mode="json") if winner else None,
    }
    emit(ctx.as_json, data, rows=rows, columns=["candidate", "rule", "action", "target"])
    if winner is None:
        raise Finding(f"no enabled rule matches {address!r}: it would be dead-lettered")
    say(ctx.as_json, f"winner: {winner.pattern} → {winner.action.value} {winner.target}".rstrip())
