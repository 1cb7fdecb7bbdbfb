"""Bouncer: a ``BounceRequest`` → one bounce to an authenticated sender, or an audited refusal.

SES-received mail: ``SendBounce`` with a per-recipient DSN (5.1.1 "mailbox does not exist"
unless the rule says otherwise), within 24 h of receipt ("too old to bounce" after that).
Postmark-received mail: Postmark cannot bounce, so an RFC 3464 report (human text, a
``message/delivery-status`` part, the original headers) goes to the envelope sender through
mailroom's own outbound path, keyed by a correlation id, so the sender sends it once. Never a
bounce to a sender that did not authenticate (verdict table), nor to a null sender.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from chalicelib.handlers.dispatch import audit_drop, load_headers
from chalicelib.mail.actions import BounceRequest, MailRef, parse_request
from chalicelib.mail.audit import AuditLog
from chalicelib.mail.inbound_email import EmailSource, InboundEmail, delivery_key
from chalicelib.mail.outbound import OutboundEmail
from chalicelib.mail.routing import RouteAction
from chalicelib.mail.verdicts import Decision, Disposition, Verdict, decide
from chalicelib.platform import claimcheck
from chalicelib.platform.aws import aws_client
from chalicelib.platform.batch import LogContext, SqsRecord, process_batch
from chalicelib.platform.errors import PermanentError
from chalicelib.platform.idempotency import IdempotencyStore, KeyState
from chalicelib.platform.logging import get_logger, log_event
from chalicelib.platform.settings import Settings, per_container
from chalicelib.providers.ses.client import Bounce, SesBouncer

EVENT_TYPE = "bouncer"
ACTION = "bounce"
ACTOR = "bouncer"
# SES: "You can only call SendBounce within 24 hours of receiving the email."
MAX_BOUNCE_AGE = timedelta(hours=24)
TOO_OLD = "too old to bounce"
UNAUTHENTICATED = "not bounced: sender not authenticated"


@dataclass
class _Services:
    settings: Settings
    idempotency: IdempotencyStore
    audit: AuditLog
    ses: SesBouncer | None = None

    def bouncer(self) -> SesBouncer:
        if self.ses is None:
            self.ses = SesBouncer.for_settings(self.settings)
        return self.ses


def _build(settings: Settings) -> _Services:
    get_logger(settings.log_level)
    dynamodb = aws_client("dynamodb")
    return _Services(
        settings=settings,
        idempotency=IdempotencyStore.for_settings(settings, dynamodb),
        audit=AuditLog.for_settings(settings, dynamodb),
    )


services = per_container(_build)


def handle_batch(event: Mapping[str, Any], remaining_time_ms: Any = None) -> dict[str, Any]:
    """Lambda entry point for the ``bouncer`` queue."""
    services()
    return process_batch(
        event, handle_record, event_type=EVENT_TYPE, remaining_time_ms=remaining_time_ms
    )


def handle_record(record: SqsRecord, ctx: LogContext) -> str:
    """Bounce one recipient of one email, or refuse with an audit record."""
    request = parse_request(record.body, BounceRequest)
    mail = request.mail
    ctx.message_id = mail.provider_message_id
    svc = services()
    refusal = _refusal(mail)
    if refusal is not None:
        _refuse(svc, request, refusal)
        return "not_bounced"
    if mail.source is EmailSource.SES and datetime.now(UTC) - mail.received_at > MAX_BOUNCE_AGE:
        _refuse(
            svc, request, Decision(Disposition.REFUSE_BOUNCE, TOO_OLD, "received over 24 h ago")
        )
        return "too_old"
    email: InboundEmail | None = None
    if mail.source is EmailSource.POSTMARK or mail.rfc_message_id is None:
        email = load_headers(mail, request.recipient)  # for the DSN, or a truncated Message-ID
    key = (
        delivery_key(email, request.recipient, ACTION)
        if email
        else mail.key(request.recipient, ACTION)
    )
    store = svc.idempotency
    claim = store.claim(key)
    if claim.state is KeyState.COMPLETED:
        return "duplicate"
    if claim.state is KeyState.UNCERTAIN:
        # SES cannot be asked whether a bounce went out; the outbound path dedupes by
        # correlation id. A second bounce beats a sender who never learns of the failure.
        log_event("uncertain bounce: sending again", event_type=EVENT_TYPE)
    try:
        if mail.source is EmailSource.SES:
            bounce_id = svc.bouncer().send(
                Bounce(
                    original_message_id=mail.provider_message_id,
                    recipient=request.recipient,
                    status=request.status,
                    diagnostic=request.diagnostic,
                    arrival=mail.received_at,
                )
            )
            result = {"bounce_id": bounce_id}
        else:
            assert email is not None
            result = {"correlation_id": _send_dsn(svc.settings, request, email, key)}
    except Exception as err:
        store.settle_failure(claim, err)
        raise
    store.complete(key, result)
    return "bounced"


def _refusal(mail: MailRef) -> Decision | None:
    """Why this mail must not be bounced, if it must not (checked again here: defence in depth)."""
    if not mail.envelope_sender or mail.envelope_sender == "<>":
        return Decision(Disposition.REFUSE_BOUNCE, "not bounced: null sender", "empty MAIL FROM")
    decision = decide(RouteAction.BOUNCE, mail.verdicts)
    if decision.disposition is not Disposition.DELIVER:
        return decision
    if mail.source is EmailSource.POSTMARK and mail.verdicts.spf is not Verdict.PASS:
        # Postmark's receiving MTA states SPF only; DKIM is not reported reliably.
        return Decision(Disposition.REFUSE_BOUNCE, UNAUTHENTICATED, "SPF not PASS (Postmark)")
    return None


def _refuse(svc: _Services, request: BounceRequest, decision: Decision) -> None:
    audit_drop(
        svc.audit,
        request.mail,
        request.recipient,
        rule_pattern="",
        action=RouteAction.BOUNCE,
        decision=Decision(Disposition.REFUSE_BOUNCE, decision.reason, decision.condition),
        actor=ACTOR,
    )


def _send_dsn(settings: Settings, request: BounceRequest, email: InboundEmail, key: str) -> str:
    """Publish the DSN as an outbound request; the sender dedupes on its correlation id."""
    dsn = dsn_message(settings.bounce_sender, request, email, key)
    claimcheck.publish(
        settings.outbound_topic_arn,
        dsn.model_dump_json(by_alias=True, exclude_defaults=True),
        group_key=dsn.to[0],
        deduplication_id=dsn.correlation_id,
    )
    return dsn.correlation_id


def dsn_message(
    sender: str, request: BounceRequest, email: InboundEmail, key: str
) -> OutboundEmail:
    """An RFC 3464 report (text, ``message/delivery-status``, ``text/rfc822-headers``) as an
    outbound request. Postmark builds the MIME: it arrives as multipart/mixed with those parts."""
    import base64

    arrival = request.mail.received_at.strftime("%a, %d %b %Y %H:%M:%S +0000")
    status_fields = (
        f"Reporting-MTA: dns; {sender.rpartition('@')[2]}\r\n"
        f"Arrival-Date: {arrival}\r\n\r\n"
        f"Final-Recipient: rfc822; {request.recipient}\r\n"
        "Action: failed\r\n"
        f"Status: {request.status}\r\n"
        f"Diagnostic-Code: smtp; 550 {request.status} {request.diagnostic}\r\n"
    )
    headers = "".join(f"{name}: {value}\r\n" for name, value in email.headers)
    text = (
        "This is the mail system at mailroom.\r\n\r\n"
        f"Your message could not be delivered to {request.recipient}: {request.diagnostic}"
        f" ({request.status}).\r\n"
    )
    fields = {
        "correlation_id": "dsn-" + hashlib.sha256(key.encode()).hexdigest()[:40],
        "from": f"Mail Delivery System <{sender}>",
        "to": [email.envelope_sender],
        "subject": f"Undelivered Mail Returned to Sender: {email.subject}"[:2000],
        "text_body": text,
        "headers": {"Auto-Submitted": "auto-replied", **_reply_headers(email)},
        "attachments": [
            {
                "name": "delivery-status.txt",
                "content": base64.b64encode(status_fields.encode()).decode(),
                "content_type": "message/delivery-status",
            },
            {
                "name": "original-headers.txt",
                "content": base64.b64encode(headers.encode("utf-8", "replace")).decode(),
                "content_type": "text/rfc822-headers",
            },
        ],
        "tag": "dsn",
    }
    try:
        return OutboundEmail.model_validate(fields)
    except ValidationError as err:
        raise PermanentError("cannot address a DSN to the envelope sender") from err


def _reply_headers(email: InboundEmail) -> dict[str, str]:
    return {"In-Reply-To": email.rfc_message_id} if email.rfc_message_id else {}
