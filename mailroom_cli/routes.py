"""``mailroom routes``: list, add, set, enable, disable, remove and test routing rules.

Rules are validated before they are written (a FreeScout target is a mailbox id, a Gmail
target an address with its authorization in SSM, whose labels ``add`` and ``set`` check
against the mailbox's own); every change is audited; containers pick it up within their
routes cache time.
"""

from __future__ import annotations

import json
import re
from typing import Any

import click

from chalicelib.mail.actions import option_labels, rule_options
from chalicelib.mail.routing import RouteAction, RouteRule, candidates, resolve
from chalicelib.platform.logging import hash_id
from mailroom_cli import gmail_labels
from mailroom_cli.console import ConfigError, Finding, emit, say, table
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


# The options each action's target may carry after its mailbox (``box@x;labels=A,B``).
OPTIONS: dict[RouteAction, tuple[str, ...]] = {
    RouteAction.GMAIL: ("labels", "never_mark_spam", "spam_label"),
    RouteAction.BOUNCE: ("diagnostic", "status"),
    RouteAction.FREESCOUT: (),
    RouteAction.DROP: (),
}
# Gmail's import takes label ids: a system label, or a user label's ``Label_<n>``.
_SYSTEM_LABELS = {"INBOX", "UNREAD", "STARRED", "IMPORTANT", "SPAM", "TRASH", "SENT", "DRAFT"}
_LABEL_ID = re.compile(r"^(Label_\d+|CATEGORY_[A-Z]+)$")
_DSN_STATUS = re.compile(r"^5\.\d{1,3}\.\d{1,3}$")


def _options_problem(action: RouteAction, options: dict[str, str]) -> str | None:
    valid = OPTIONS.get(action, ())
    for name in options:
        if name not in valid:
            listed = ", ".join(valid) if valid else "none"
            return f"unknown option {name!r} for {action.value} (valid: {listed})"
    labels = list(option_labels(options))
    labels += [options["spam_label"]] if "spam_label" in options else []
    for label in labels:
        if label not in _SYSTEM_LABELS and not _LABEL_ID.match(label):
            return (
                f"label {label!r} is not a Gmail label id (a system label such as INBOX or "
                "SPAM, or a user label's id such as Label_34)"
            )
    if options.get("never_mark_spam", "true").lower() not in {"true", "false"}:
        return "never_mark_spam is true or false"
    if not _DSN_STATUS.match(options.get("status", "5.1.1")):
        return "a bounce status is a permanent DSN code such as 5.1.1"
    return None


def problem(ctx: Context, rule: RouteRule) -> str | None:
    """Why ``rule`` cannot work as written, or None."""
    if rule.pattern != "*" and not (_ADDRESS.match(rule.pattern) or _DOMAIN.match(rule.pattern)):
        return "pattern must be an address, *@domain or *"
    if rule.action is RouteAction.UNKNOWN:
        return f"action must be one of {', '.join(ACTIONS)}"
    target, options = rule_options(rule.target)
    found = _options_problem(rule.action, options)
    if found is not None:
        return found
    if rule.action is RouteAction.FREESCOUT and not (target.isdigit() and int(target)):
        return "a freescout target is a mailbox id (a positive integer)"
    if rule.action is RouteAction.GMAIL:
        if not _ADDRESS.match(target):
            return "a gmail target is a mailbox address"
        if not parameter_exists(ctx, gmail_parameter(ctx, target)):
            return f"no Gmail authorization in SSM ({gmail_parameter(ctx, target)})"
    return None


def audit_pattern(pattern: str) -> str:
    """A pattern fit for an audit record: an address is hashed, its domain kept."""
    if pattern.startswith("*"):
        return pattern
    local, _, domain = pattern.rpartition("@")
    return f"{hash_id(local)}@{domain}"


def _row(ctx: Context, rule: RouteRule) -> dict[str, Any]:
    return {**rule.model_dump(mode="json"), "problem": problem(ctx, rule)}


def cache_seconds(ctx: Context) -> int:
    """The routes cache time the stage's functions run with (their environment), else the
    CLI's own setting."""
    name = "MAILROOM_ROUTES_CACHE_SECONDS"
    try:
        if ctx.target.local and ctx.target.state_dir is not None:
            env = json.loads((ctx.target.state_dir / "local.json").read_text()).get("env", {})
        else:
            function = f"mailroom-{ctx.stage}-ses_router"
            answer = ctx.client("lambda").get_function_configuration(FunctionName=function)
            env = answer.get("Environment", {}).get("Variables", {})
        return int(env.get(name, ctx.settings.routes_cache_seconds))
    except Exception:  # no such function, no permission: the default is the best guess
        return ctx.settings.routes_cache_seconds


def _cache_note(ctx: Context) -> None:
    seconds = cache_seconds(ctx)
    say(ctx.as_json, f"containers pick this up within {seconds} s (routes cache)")


def _check_labels(ctx: Context, rule: RouteRule) -> gmail_labels.LabelCheck | None:
    """Refuse a label id the rule's mailbox does not have; warn when its labels cannot be read
    (the rule is written: the forwarder dead-letters with the reason if a label is wrong)."""
    found = gmail_labels.check(ctx, rule)
    if found is None:
        return None
    if found.warning is not None:
        click.echo(
            f"warning: labels not checked against {found.mailbox}: {found.warning}; "
            "the rule is written as given",
            err=True,
        )
    unknown = found.unknown
    if not unknown:
        return found
    line = (
        f"rule {rule.pattern!r} refused: the Gmail mailbox {found.mailbox} has no label "
        f"{', '.join(unknown)}"
    )
    if ctx.as_json:
        emit(True, {"refused": rule.pattern, "label_check": found.summary()})
        raise ConfigError(line)
    rows = found.summary()["mailbox_labels"] or []
    raise ConfigError(f"{line}; its labels:\n{table(rows, ['id', 'name'])}")


def _write(
    ctx: Context, rule: RouteRule, *, action: str, reason: str, check_labels: bool = False
) -> None:
    found = problem(ctx, rule)
    if found is not None:
        raise ConfigError(f"rule {rule.pattern!r} refused: {found}")
    labels = _check_labels(ctx, rule) if check_labels else None
    ctx.routes.put_rule(rule)
    ctx.record(
        action,
        reason=reason,
        pattern=audit_pattern(rule.pattern),
        route_action=rule.action.value,
        target=rule.target,
        enabled=str(rule.enabled),
    )
    row = _row(ctx, rule)
    data = row if labels is None else {**row, "label_check": labels.summary()}
    emit(ctx.as_json, data, rows=[row], columns=COLUMNS)
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
@click.option(
    "--target",
    default="",
    help="FreeScout mailbox id, or Gmail address with options "
    "(box@x;labels=INBOX,Label_7;spam_label=Label_34;never_mark_spam=false), or bounce "
    "options (status=5.1.1;diagnostic=...).",
)
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
    _write(ctx, rule, action="route.add", reason=reason, check_labels=True)


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
    updated = rule.model_copy(update=changes)
    _write(ctx, updated, action="route.set", reason=reason, check_labels=True)


def _toggle_command(name: str, *, enabled: bool, summary: str) -> None:
    """``routes enable`` and ``routes disable``: one rule's ``enabled`` flag, audited."""

    @routes.command(name=name, help=summary)
    @click.argument("pattern")
    @click.option("--reason", default=f"route {name}d", help="For the audit record.")
    @click.pass_obj
    def toggle(ctx: Context, pattern: str, reason: str) -> None:
        rule = _existing(ctx, pattern).model_copy(update={"enabled": enabled})
        _write(ctx, rule, action=f"route.{name}", reason=reason)


_toggle_command("enable", enabled=True, summary="Enable the rule for PATTERN.")
_toggle_command(
    "disable",
    enabled=False,
    summary="Disable the rule for PATTERN (the next candidate wins instead).",
)


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
