"""The labels of a route's Gmail mailbox, read with the mailbox's own authorization in SSM, so
``mailroom routes add|set`` refuses a label id the mailbox does not have.

The forwarder's client does the reading (``GmailClient.labels()``); only the credential is read
here, through the operator's own SSM client, and the Gmail endpoints are the stage's settings
(the local stack's stand-in under ``--local``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from chalicelib.mail.actions import option_labels, rule_options
from chalicelib.mail.routing import RouteAction, RouteRule
from chalicelib.platform.errors import MailroomError
from chalicelib.providers.gmail.client import GmailClient, OAuthClient, TokenCache, parameter_name
from mailroom_cli.context import Context


class MailboxUnreachable(Exception):
    """The mailbox's labels could not be read (no credential, revoked, Gmail or network down)."""


@dataclass(frozen=True)
class LabelCheck:
    """A rule's label ids against its mailbox's labels (``labels`` None: they were not read)."""

    mailbox: str
    named: tuple[str, ...]
    labels: dict[str, str] | None = None
    warning: str | None = None

    @property
    def unknown(self) -> list[str]:
        if self.labels is None:
            return []
        return [label for label in self.named if label not in self.labels]

    def summary(self) -> dict[str, Any]:
        """The facts, for ``--json``."""
        return {
            "mailbox": self.mailbox,
            "checked": self.labels is not None,
            "named": list(self.named),
            "unknown": self.unknown,
            "mailbox_labels": None if self.labels is None else _listed(self.labels),
            "warning": self.warning,
        }


def _listed(labels: dict[str, str]) -> list[dict[str, str]]:
    """User labels first (the ones an operator picks among), then the system labels."""
    order = sorted(labels.items(), key=lambda x: (not x[0].startswith("Label_"), x[1].lower()))
    return [{"id": label_id, "name": name} for label_id, name in order]


def named_labels(rule: RouteRule) -> tuple[str, tuple[str, ...]]:
    """A gmail rule's mailbox and the label ids it names (its labels, then its spam label)."""
    mailbox, options = rule_options(rule.target)
    named = list(option_labels(options))
    if options.get("spam_label"):
        named.append(options["spam_label"])
    return mailbox, tuple(dict.fromkeys(named))


def check(ctx: Context, rule: RouteRule) -> LabelCheck | None:
    """``rule``'s labels against its mailbox, or None for a rule that names no label."""
    if rule.action is not RouteAction.GMAIL:
        return None
    mailbox, named = named_labels(rule)
    if not named:
        return None
    try:
        return LabelCheck(mailbox, named, labels=mailbox_labels(ctx, mailbox))
    except MailboxUnreachable as err:
        return LabelCheck(mailbox, named, warning=str(err))


def mailbox_labels(ctx: Context, mailbox: str) -> dict[str, str]:
    """Label id → name of ``mailbox``, read with its authorization in SSM."""
    import requests

    oauth = _credential(ctx, mailbox)
    api_url, token_url = _endpoints(ctx)
    session = requests.Session()
    timeout = float(ctx.settings.http_timeout_seconds)
    client = GmailClient(
        mailbox,
        oauth,
        tokens=TokenCache(token_url, session=session, timeout=timeout),
        session=session,
        api_url=api_url,
        timeout=timeout,
    )
    try:
        return client.labels()
    except MailroomError as err:
        raise MailboxUnreachable(f"Gmail did not list its labels ({err})") from err


def _credential(ctx: Context, mailbox: str) -> OAuthClient:
    name = ctx.settings.parameter(parameter_name(mailbox))
    try:
        answer = ctx.client("ssm").get_parameters(Names=[name], WithDecryption=True)
    except Exception as err:  # AccessDenied, throttling, no network: the check is advisory
        raise MailboxUnreachable(f"cannot read {name} ({type(err).__name__})") from err
    values = [p["Value"] for p in answer.get("Parameters", []) if p.get("Name") == name]
    if not values:
        raise MailboxUnreachable(f"no Gmail authorization in SSM ({name})")
    try:
        return OAuthClient.from_json(values[0])
    except MailroomError as err:
        raise MailboxUnreachable(f"{name}: {err.reason}") from err


def _endpoints(ctx: Context) -> tuple[str, str]:
    """Gmail's API and token URLs for the target: the local stack's stand-in under --local."""
    if ctx.target.local and ctx.target.state_dir is not None:
        try:
            gmail = json.loads((ctx.target.state_dir / "local.json").read_text())["gmail"]
            return str(gmail["url"]), str(gmail["token_url"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # an older local.json: the settings' defaults
    return ctx.settings.gmail_api_url, ctx.settings.gmail_token_url
