"""Acting on the one inbound decision (``mail.decision``), for mail from either source: its
audit record written, a dead-letter with its reason, or the action started (the Gmail
forwarder's or the bouncer's queue, or the inbound topic for FreeScout); and the workers' way
back from a ``MailRef`` to the email. Shared by the SES router, the bridge and the workers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import lru_cache

from pydantic import BaseModel, ValidationError

from chalicelib.mail.actions import (
    DEFAULT_BOUNCE_DIAGNOSTIC,
    DEFAULT_BOUNCE_STATUS,
    BounceRequest,
    GmailRequest,
    MailRef,
    option_labels,
)
from chalicelib.mail.audit import AuditLog
from chalicelib.mail.decision import UNKNOWN_ACTION, AuditEntry, InboundDecision, decide_inbound
from chalicelib.mail.inbound_email import InboundEmail, read_head, read_raw
from chalicelib.mail.routing import RouteAction, RouteRule
from chalicelib.mail.suppression import normalise
from chalicelib.mail.trace_index import TraceIndex, delivered, email_key
from chalicelib.mail.verdicts import Disposition
from chalicelib.platform import claimcheck
from chalicelib.platform.aws import aws_client
from chalicelib.platform.errors import PermanentError, PoisonMessageError, TransientError
from chalicelib.platform.logging import hash_id, log_event
from chalicelib.platform.settings import Settings
from chalicelib.providers.postmark.inbound import PostmarkInbound, to_inbound_email

EVENT_TYPE = "ses_router"
ACTOR = "router"


def dispatch(
    mail: MailRef,
    recipient: str,
    rule: RouteRule | None,
    settings: Settings,
    audit: AuditLog,
    *,
    actor: str = ACTOR,
    event_type: str = EVENT_TYPE,
) -> str:
    """Decide for ``recipient`` under ``rule`` and act on the decision."""
    decision = decide_inbound(mail, recipient, rule)
    return act(decision, mail, recipient, settings, audit, actor=actor, event_type=event_type)


def act(
    decision: InboundDecision,
    mail: MailRef,
    recipient: str,
    settings: Settings,
    audit: AuditLog,
    *,
    actor: str = ACTOR,
    event_type: str = EVENT_TYPE,
) -> str:
    """Write the decision's audit record, or dead-letter with its reason, or start the
    action. FreeScout from here is the router's hand-off to the bridge."""
    if decision.audit is not None:
        write_audit(audit, decision.audit, actor=actor)
        log_event(
            "mail dropped by policy",
            event_type=event_type,
            action=decision.action.value if decision.action else "none",
            outcome=decision.audit.action,
            reason=decision.reason,
            message_id_hash=hash_id(mail.provider_message_id),
        )
        return "dropped"
    if decision.dead_letter is not None:
        raise PermanentError(decision.dead_letter)
    options = decision.options
    if decision.action is RouteAction.GMAIL:
        spam = decision.disposition is Disposition.SPAM_LABEL
        labels = gmail_labels(options, settings.gmail_labels, spam=spam)
        enqueue(
            settings.gmail_queue_name,
            GmailRequest(
                recipient=recipient,
                mailbox=normalise(decision.target),
                labels=labels,
                never_mark_spam=options.get("never_mark_spam", "true").lower() != "false",
                spam=spam,
                mail=mail,
            ),
        )
        return "gmail"
    if decision.action is RouteAction.BOUNCE:
        enqueue(
            settings.bouncer_queue_name,
            BounceRequest(
                recipient=recipient,
                status=options.get("status", DEFAULT_BOUNCE_STATUS),
                diagnostic=options.get("diagnostic", DEFAULT_BOUNCE_DIAGNOSTIC),
                mail=mail,
            ),
        )
        return "bounce"
    if decision.action is RouteAction.FREESCOUT:
        _to_bridge(mail, recipient, settings)
        return "freescout"
    raise PermanentError(UNKNOWN_ACTION)


def _to_bridge(mail: MailRef, recipient: str, settings: Settings) -> None:
    """The inbound FIFO topic, in the shape the bridge loads with ``load_ses_email``."""
    if mail.location is None:
        raise PermanentError("only SES mail is handed to the bridge by the router")
    payload = {
        "source": "ses",
        "bucket": mail.location.bucket,
        "key": mail.location.key,
        "recipient": recipient,
        "ses_message_id": mail.provider_message_id,
        "envelope_sender": mail.envelope_sender,
        "verdicts": mail.verdicts.as_strings(),
    }
    dedup = hashlib.sha256(f"{mail.provider_message_id}\n{recipient}".encode()).hexdigest()
    claimcheck.publish(
        settings.inbound_topic_arn,
        json.dumps(payload, separators=(",", ":")),
        group_key=recipient,
        deduplication_id=f"ses-{dedup[:60]}",
    )


def gmail_labels(
    options: Mapping[str, str], defaults: tuple[str, ...], *, spam: bool
) -> tuple[str, ...]:
    """The label ids a Gmail rule's options give an import: its labels (else the stage's), and
    for mail the verdicts mark as spam, its spam label in place of INBOX."""
    labels = option_labels(options) or defaults
    if spam and options.get("spam_label"):
        labels = (*(label for label in labels if label != "INBOX"), options["spam_label"])
    return labels


def trace_done(
    index: TraceIndex,
    request: BounceRequest | GmailRequest,
    key: str,
    result: Mapping[str, str],
    *,
    action: str,
    outcome: str,
) -> None:
    """A worker's step in the email's story: ``action`` done for the request's recipient."""
    mail = request.mail
    index.write(
        [
            delivered(
                email_key(mail.source.value, mail.provider_message_id),
                action=action,
                recipient=request.recipient,
                key=key,
                result=result,
                outcome=outcome,
            )
        ]
    )


def write_audit(audit: AuditLog, entry: AuditEntry, *, actor: str = ACTOR) -> None:
    """Write one decision's audit record."""
    audit.record(entry.action, actor=actor, reason=entry.reason, details=entry.details)


def load_mail(
    mail: MailRef, recipient: str, *, headers_only: bool = False
) -> tuple[InboundEmail, bytes]:
    """The normalised email for ``recipient`` and its RFC 5322 bytes (from S3, or rendered
    from the Postmark payload); malformed input is poison. With ``headers_only`` the email
    carries the header fields only: no body part is decoded (the bytes are still returned)."""
    if mail.location is not None:
        raw = read_raw(mail.location.bucket, mail.location.key)
        return _from_s3(mail, recipient, raw, headers_only=headers_only), raw
    payload = claimcheck.check_out(mail.postmark_payload or "")
    email = _from_postmark(mail, recipient, payload)
    return email, email.to_mime(
        original=("original-postmark.json", "application/json", payload.encode("utf-8"))
    )


def load_headers(mail: MailRef, recipient: str) -> InboundEmail:
    """The email's header fields only: SES mail is read from S3 up to its header block."""
    if mail.location is not None:
        head = read_head(mail.location.bucket, mail.location.key)
        return _from_s3(mail, recipient, head, headers_only=True)
    return _from_postmark(mail, recipient, claimcheck.check_out(mail.postmark_payload or ""))


def _from_s3(mail: MailRef, recipient: str, raw: bytes, *, headers_only: bool) -> InboundEmail:
    return InboundEmail.from_mime(
        raw,
        recipients=[recipient],
        verdicts=mail.verdicts,
        s3_location=mail.location,
        envelope_sender=mail.envelope_sender,
        provider_message_id=mail.provider_message_id,
        headers_only=headers_only,
    )


def _from_postmark(mail: MailRef, recipient: str, payload: str) -> InboundEmail:
    if mail.postmark_payload is None:
        raise PoisonMessageError("request names neither an S3 object nor a Postmark payload")
    try:
        parsed = PostmarkInbound.model_validate_json(payload)
    except ValidationError as err:
        raise PoisonMessageError("not a Postmark inbound payload") from err
    return to_inbound_email(parsed, recipient)


def enqueue(queue_name: str, request: BaseModel) -> None:
    """Send ``request`` to a standard queue; failures are transient (the caller retries)."""
    body = request.model_dump_json()
    try:
        aws_client("sqs").send_message(QueueUrl=queue_url(queue_name), MessageBody=body)
    except Exception as err:
        raise TransientError(f"send to {queue_name} failed") from err


@lru_cache(maxsize=16)
def queue_url(name: str) -> str:
    return str(aws_client("sqs").get_queue_url(QueueName=name)["QueueUrl"])
