"""What happened to an email we sent, from the delivery log: the three questions of a
sending investigation for either provider, with the provider's evidence.

(1) did the provider accept it (its message id, or the error it answered); (2) was it dropped
inside the provider (rendering failure, suppression list, virus reject); (3) what happened
after (delivered with the receiving server's answer, bounced with the diagnostic code,
complained, delayed with its type and expiry). Provider message ids resolve to our
correlation id through the lookup the sender writes.
"""

from __future__ import annotations

from typing import Any

from chalicelib.mail.message_ids import correlation_for
from chalicelib.platform.settings import OUTBOUND_PROVIDERS
from mailroom_cli.context import Context

OUTBOUND = {"queued", "sent", "dead_lettered", "rejected", "rendering_failed"}
# Bounce subtypes that mean the provider itself dropped the message.
DROPPED_BOUNCES = {"OnAccountSuppressionList", "Suppressed"}
AFTER = {"delivered", "bounced", "complained", "delayed"}


def resolve(ctx: Context, ident: str) -> tuple[str, str | None]:
    """(correlation id, provider) for a provider message id; ``ident`` itself otherwise."""
    for provider in OUTBOUND_PROVIDERS:
        found = correlation_for(
            ctx.client("dynamodb"), ctx.settings.state_table, provider, ident.strip()
        )
        if found:
            return found, provider
    return ident, None


def provider_history(ctx: Context, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Feedback kept under ``ses:<message id>`` (it came before the lookup could place it)."""
    ids = {e["details"].get("ses_message_id") for e in history} - {None, ""}
    extra = []
    for message_id in sorted(i for i in ids if i):
        for event in ctx.delivery_log.history(f"ses:{message_id}"):
            extra.append({"at": event.at, "status": event.status.value, "details": event.details})
    return extra


def _said(details: dict[str, str]) -> str:
    for name in ("smtp_response", "diagnostic_code", "description"):
        if details.get(name):
            return details[name]
    return ""


def sent_answers(history: list[dict[str, Any]]) -> dict[str, str] | None:
    """The three answers for outbound mail; None if ``history`` is not outbound mail."""
    statuses = {e["status"] for e in history}
    if not statuses & (OUTBOUND | AFTER):
        return None
    accepted = "no record of a send"
    for event in history:
        details = event["details"]
        if event["status"] == "sent" and details.get("provider"):
            provider = details["provider"]
            accepted = f"yes: {provider} {details.get(f'{provider}_message_id', '')}".strip()
            break
        if event["status"] == "sent" and details.get("postmark_message_id"):
            accepted = f"yes: postmark {details['postmark_message_id']}"
            break
        if event["status"] == "dead_lettered":
            accepted = f"no: {details.get('reason', 'dead-lettered')}"
        if event["status"] == "suppressed":
            accepted = f"not sent: suppressed ({details.get('recipients', '')})"
    dropped = "no"
    for event in history:
        details = event["details"]
        if event["status"] == "rejected":
            dropped = f"yes: rejected by the provider ({details.get('reason', '')})"
        elif event["status"] == "rendering_failed":
            dropped = f"yes: rendering failure ({details.get('error', '')})"
        elif event["status"] == "bounced" and details.get("bounce_subtype") in DROPPED_BOUNCES:
            where = "account" if details["bounce_subtype"] != "Suppressed" else "global"
            dropped = f"yes: on SES's {where} suppression list ({details.get('recipient', '')})"
    after = [e for e in history if e["status"] in AFTER]
    if not after:
        then = "no word yet"
    else:
        lines = []
        for event in after:
            details = event["details"]
            what = f"{event['status']} {details.get('recipient', '')} at {event['at']}"
            if event["status"] == "bounced":
                kind = details.get("bounce_type") or details.get("type") or ""
                what += f" ({kind} {details.get('bounce_subtype', '')})".replace(" )", ")")
            if event["status"] == "delayed":
                until = details.get("expiration_time", "?")
                what += f" ({details.get('delay_type', '')}, until {until})"
            if event["status"] == "complained":
                what += f" ({details.get('complaint_type') or 'complaint'})"
            said = _said(details)
            lines.append(f"{what}: {said}" if said else what)
        then = "; ".join(lines)
    return {
        "did the provider accept it": accepted,
        "was it dropped inside the provider": dropped,
        "what happened after": then,
    }
