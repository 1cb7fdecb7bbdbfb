"""The one inbound decision, for mail from either source: rule + verdicts + sender facts →
the action, its disposition, the reason, and the audit record to write. Pure: the handlers
act on it (``handlers.dispatch``); nothing here reads a store or sends a message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from chalicelib.mail.actions import MailRef, rule_options
from chalicelib.mail.inbound_email import EmailSource
from chalicelib.mail.routing import RouteAction, RouteRule
from chalicelib.mail.verdicts import Disposition, Verdict, decide
from chalicelib.platform.logging import hash_id

NO_RULE = "no routing rule matches the recipient"
UNKNOWN_ACTION = "routing rule has an unknown action"
NULL_SENDER = "not bounced: null sender"
REPORT = "not bounced: the message is itself a report or auto-submitted"
UNAUTHENTICATED = "not bounced: sender not authenticated"
OTHER_ADDRESS = "not bounced: SPF passed for another address"
# RFC 5321 null reverse-path and the local parts that by convention never take reports.
_NULL_LOCAL_PARTS = frozenset({"mailer-daemon", "postmaster"})


@dataclass(frozen=True)
class AuditEntry:
    """What ``AuditLog.record`` writes for mail not delivered on purpose."""

    action: str
    reason: str
    details: dict[str, str]


@dataclass(frozen=True)
class InboundDecision:
    """What to do with one email for one recipient."""

    action: RouteAction | None
    disposition: Disposition | None
    reason: str
    condition: str = ""
    target: str = ""
    options: Mapping[str, str] = field(default_factory=dict)
    audit: AuditEntry | None = None
    dead_letter: str | None = None  # no action can be taken: dead-letter with this reason

    @property
    def delivers(self) -> bool:
        return self.disposition in {Disposition.DELIVER, Disposition.SPAM_LABEL}


def decide_inbound(mail: MailRef, recipient: str, rule: RouteRule | None) -> InboundDecision:
    """The decision for ``recipient`` of ``mail`` under ``rule`` (None: no rule matched)."""
    if rule is None:
        return InboundDecision(None, None, NO_RULE, dead_letter=NO_RULE)
    if rule.action is RouteAction.UNKNOWN:
        return InboundDecision(rule.action, None, UNKNOWN_ACTION, dead_letter=UNKNOWN_ACTION)
    target, options = rule_options(rule.target)
    verdict = decide(rule.action, mail.verdicts, has_spam_label=bool(options.get("spam_label")))
    disposition, reason, condition = verdict.disposition, verdict.reason, verdict.condition
    if rule.action is RouteAction.BOUNCE and disposition is Disposition.DELIVER:
        refused = bounce_refusal(mail)
        if refused is not None:
            disposition, reason, condition = Disposition.REFUSE_BOUNCE, *refused
    if disposition in {Disposition.DROP, Disposition.REFUSE_BOUNCE}:
        audit = audit_entry(
            mail, recipient, rule.pattern, rule.action, disposition, reason, condition
        )
        return InboundDecision(
            rule.action, disposition, reason, condition, target, options, audit=audit
        )
    problem = _target_problem(rule.action, target)
    return InboundDecision(
        rule.action, disposition, reason, condition, target, options, dead_letter=problem
    )


def _target_problem(action: RouteAction, target: str) -> str | None:
    if action is RouteAction.GMAIL and not target:
        return "gmail route has no target mailbox"
    if action is RouteAction.FREESCOUT and not target.strip().isdigit():
        return "freescout route target is not a mailbox id"
    return None


def bounce_refusal(mail: MailRef) -> tuple[str, str] | None:
    """Why no report may go to ``mail``'s envelope sender (reason, condition), or None.

    A report goes only to the envelope sender the receiving MTA checked: never to a null
    sender, never about a message that is itself a report (no bounce loops), and for
    Postmark mail only when SPF passed for exactly that address.
    """
    if is_null_sender(mail.envelope_sender):
        return NULL_SENDER, "null or MAILER-DAEMON envelope sender"
    if mail.auto_report:
        return REPORT, "multipart/report, Auto-Submitted or X-Failed-Recipients"
    verdict = decide(RouteAction.BOUNCE, mail.verdicts)
    if verdict.disposition is not Disposition.DELIVER:
        return verdict.reason, verdict.condition
    if mail.source is EmailSource.POSTMARK:
        # Postmark's receiving MTA states SPF only (Received-SPF); DKIM is not reported
        # reliably, so SPF must pass, and for the very address the report would go to.
        if mail.verdicts.spf is not Verdict.PASS:
            return UNAUTHENTICATED, "SPF not PASS (Postmark)"
        if mail.spf_mailfrom and mail.spf_mailfrom != mail.envelope_sender.lower():
            return OTHER_ADDRESS, "SPF envelope-from differs from Return-Path"
    return None


def is_null_sender(address: str) -> bool:
    """``<>``, empty, or a MAILER-DAEMON/postmaster address: never the target of a report."""
    bare = address.strip().strip("<>").strip()
    if not bare:
        return True
    return bare.rpartition("@")[0].lower() in _NULL_LOCAL_PARTS or bare.lower() in {
        "mailer-daemon",
        "postmaster",
    }


def is_automatic_report(headers: Sequence[tuple[str, str]]) -> bool:
    """Whether the message is itself a delivery report or auto-submitted (RFC 3834, 6522)."""
    for name, value in headers:
        lowered = name.lower()
        if lowered == "content-type" and value.strip().lower().startswith("multipart/report"):
            return True
        if lowered == "auto-submitted" and value.split(";", 1)[0].strip().lower() != "no":
            return True
        if lowered == "x-failed-recipients":
            return True
    return False


def audit_entry(
    mail: MailRef,
    recipient: str,
    rule_pattern: str,
    action: RouteAction,
    disposition: Disposition,
    reason: str,
    condition: str,
) -> AuditEntry:
    """The audit record of mail not delivered on purpose: verdicts, rule, time, hashes."""
    verdicts = mail.verdicts.as_strings()
    return AuditEntry(
        "refuse_bounce" if disposition is Disposition.REFUSE_BOUNCE else "drop",
        reason,
        {
            "source": mail.source.value,
            "message_hash": hash_id(mail.rfc_message_id or mail.provider_message_id) or "",
            "recipient_hash": hash_id(recipient) or "",
            "rule_hash": hash_id(rule_pattern) or "",
            "rule_action": action.value,
            "condition": condition,
            "received_at": mail.received_at.isoformat(),
            **{f"verdict_{name}": value for name, value in verdicts.items()},
        },
    )
