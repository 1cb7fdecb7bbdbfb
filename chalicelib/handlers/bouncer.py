"""Bouncer: a ``BounceRequest`` → one bounce to an authenticated sender, or an audited refusal.

SES-received mail: ``SendBounce`` with a per-recipient DSN (5.1.1 "mailbox does not exist"
unless the rule says otherwise), within 24 h of receipt ("too old to bounce" after that).
An uncertain SendBounce (answer lost) cannot be proven, so it is dead-lettered, never sent twice.
Postmark-received mail: Postmark cannot bounce, so an RFC 3464 report (human text, a
``message/delivery-status`` part, the original headers) goes to the envelope sender
(``Return-Path``, only when SPF passed for it) through mailroom's own outbound path, keyed by
a correlation id. Never a report to a null sender or about a report (``mail.decision``).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from chalicelib.handlers.dispatch import load_headers, trace_done, write_audit
from chalicelib.handlers.services import Services, queue_handler, services
from chalicelib.mail.actions import BounceRequest, MailRef, parse_request
from chalicelib.mail.decision import audit_entry, bounce_refusal, is_automatic_report
from chalicelib.mail.inbound_email import EmailSource, InboundEmail, delivery_key
from chalicelib.mail.outbound import OutboundEmail
from chalicelib.mail.routing import RouteAction
from chalicelib.mail.verdicts import Disposition
from chalicelib.platform import claimcheck
from chalicelib.platform.batch import LogContext, SqsRecord
from chalicelib.platform.errors import PermanentError
from chalicelib.platform.idempotency import KeyState
from chalicelib.platform.logging import log_event
from chalicelib.platform.settings import Settings
from chalicelib.providers.postmark.inbound import sender_facts
from chalicelib.providers.ses.client import Bounce

EVENT_TYPE = "bouncer"
ACTION = "bounce"
ACTOR = "bouncer"
# SES: "You can only call SendBounce within 24 hours of receiving the email."
MAX_BOUNCE_AGE = timedelta(hours=24)
TOO_OLD = "too old to bounce"
MAY_HAVE_BOUNCED = "bounce may have been sent; not sent again"


def handle_record(record: SqsRecord, ctx: LogContext) -> str:
    """Bounce one recipient of one email, or refuse with an audit record."""
    request = parse_request(record.body, BounceRequest)
    ctx.message_id = request.mail.provider_message_id
    svc = services()
    email: InboundEmail | None = None
    if request.mail.source is EmailSource.POSTMARK or request.mail.rfc_message_id is None:
        # For the DSN, or the Message-ID (and headers) SES truncated: the header block only.
        email = load_headers(request.mail, request.recipient)
        request = request.model_copy(update={"mail": _checked(request.mail, email)})
    mail = request.mail
    refusal = bounce_refusal(mail)
    if refusal is not None:
        _refuse(svc, request, *refusal)
        return "not_bounced"
    if mail.source is EmailSource.SES and datetime.now(UTC) - mail.received_at > MAX_BOUNCE_AGE:
        _refuse(svc, request, TOO_OLD, "received over 24 h ago")
        return "too_old"
    key = (
        delivery_key(email, request.recipient, ACTION)
        if email
        else mail.key(request.recipient, ACTION)
    )
    store = svc.idempotency
    claim = store.claim(key)
    if claim.state is KeyState.COMPLETED:
        return "duplicate"
    if claim.state is KeyState.UNCERTAIN and mail.source is EmailSource.SES:
        # SendBounce takes no idempotency key and SES has no API to list the bounces sent:
        # an attempt whose answer was lost cannot be proven either way. A second bounce
        # is the harm here, so the message waits in the DLQ for a person.
        unproven = PermanentError(MAY_HAVE_BOUNCED)
        log_event(MAY_HAVE_BOUNCED, event_type=EVENT_TYPE, outcome="uncertain")
        store.settle_failure(claim, unproven)
        raise unproven
    try:
        if mail.source is EmailSource.SES:
            bounce_id = svc.ses_bouncer.send(
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
            # The outbound path dedupes on the correlation id: sending again is safe.
            assert email is not None
            result = {"correlation_id": _send_dsn(svc.settings, request, email, key)}
    except Exception as err:
        store.settle_failure(claim, err)
        raise
    store.complete(key, result)
    trace_done(svc.index, request, key, result, action=ACTION, outcome="bounced")
    return "bounced"


def _checked(mail: MailRef, email: InboundEmail) -> MailRef:
    """``mail`` with the sender facts read again from the message itself (defence in depth,
    and a request queued before the facts were recorded gets them here)."""
    report = mail.auto_report or is_automatic_report(email.headers)
    if mail.source is not EmailSource.POSTMARK:
        return mail.model_copy(update={"auto_report": report})
    envelope, spf_mailfrom, postmark_report = sender_facts(email.headers)
    return mail.model_copy(
        update={
            "envelope_sender": envelope,
            "spf_mailfrom": spf_mailfrom,
            "auto_report": report or postmark_report,
        }
    )


def _refuse(svc: Services, request: BounceRequest, reason: str, condition: str) -> None:
    entry = audit_entry(
        request.mail,
        request.recipient,
        "",
        RouteAction.BOUNCE,
        Disposition.REFUSE_BOUNCE,
        reason,
        condition,
    )
    write_audit(svc.audit, entry, actor=ACTOR)


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
        # Only the envelope sender SPF checked (never From, which the sender sets freely).
        "to": [request.mail.envelope_sender],
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


handle_batch = queue_handler(handle_record, event_type=EVENT_TYPE, queue="bouncer")
