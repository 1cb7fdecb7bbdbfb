"""SES router: one receipt notification → per envelope recipient, a routing decision → an action.

Per recipient in ``receipt.recipients`` (Bcc'd recipients are only there): resolve the rule,
apply the verdict table (``chalicelib.mail.verdicts``), then publish one message per (recipient,
action): the Gmail forwarder's or the bouncer's queue, or the inbound FIFO topic for
FreeScout (the bridge loads the email with ``load_ses_email``). Drops and refused bounces
write an audit record. Publishing is at-least-once; every worker dedupes on
``delivery_key``, so a retried or redriven router message delivers nothing twice. A
failure here raises and the batch runner dead-letters it: the mail never sits only in S3.
``dispatch`` serves Postmark-received mail too (the bridge calls it for gmail and bounce).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.mail.actions import (
    DEFAULT_BOUNCE_DIAGNOSTIC,
    DEFAULT_BOUNCE_STATUS,
    BounceRequest,
    GmailRequest,
    MailRef,
    enqueue,
    rule_options,
)
from chalicelib.mail.audit import AuditLog
from chalicelib.mail.inbound_email import EmailSource, S3Location
from chalicelib.mail.routing import DynamoRouteStore, RouteAction, RouteRule, resolve
from chalicelib.mail.suppression import normalise
from chalicelib.mail.verdicts import Decision, Disposition, decide
from chalicelib.platform import claimcheck
from chalicelib.platform.aws import aws_client
from chalicelib.platform.batch import LogContext, SqsRecord, process_batch
from chalicelib.platform.envelope import unwrap
from chalicelib.platform.errors import PermanentError, PoisonMessageError, TransientError
from chalicelib.platform.logging import get_logger, hash_id, log_event, log_routing_decision
from chalicelib.platform.settings import Settings, per_container
from chalicelib.providers.ses.receipt import SETUP_NOTIFICATION, SesNotification

EVENT_TYPE = "ses_router"
ACTOR = "router"


@dataclass
class _Services:
    settings: Settings
    routes: DynamoRouteStore
    audit: AuditLog


def _build(settings: Settings) -> _Services:
    get_logger(settings.log_level)
    dynamodb = aws_client("dynamodb")
    return _Services(
        settings=settings,
        routes=DynamoRouteStore(
            settings.routes_table, cache_seconds=settings.routes_cache_seconds, client=dynamodb
        ),
        audit=AuditLog.for_settings(settings, dynamodb),
    )


services = per_container(_build)


def handle_batch(event: Mapping[str, Any], remaining_time_ms: Any = None) -> dict[str, Any]:
    """Lambda entry point for the ``ses-inbound`` queue."""
    services()
    return process_batch(
        event, handle_record, event_type=EVENT_TYPE, remaining_time_ms=remaining_time_ms
    )


def handle_record(record: SqsRecord, ctx: LogContext) -> str:
    """Route every envelope recipient of one received email; raise on failure."""
    message, _ = unwrap(record.body)
    if SETUP_NOTIFICATION in message[:300]:
        return "ignored"  # SES's test publish when the rule is saved
    note = SesNotification.parse(message)
    ctx.message_id = note.mail.message_id
    svc = services()
    mail = MailRef(
        source=EmailSource.SES,
        provider_message_id=note.mail.message_id,
        received_at=note.receipt.timestamp,
        envelope_sender=note.mail.source,
        rfc_message_id=note.rfc_message_id,
        verdicts=note.verdicts,
        location=_stored(note),
    )
    rules = svc.routes.rules()
    recipients = list(dict.fromkeys(normalise(r) for r in note.receipt.recipients))
    outcomes: list[str] = []
    unrouted = 0
    for recipient in recipients:
        rule = resolve(recipient, rules)
        log_routing_decision(
            EVENT_TYPE,
            message_id=mail.provider_message_id,
            action=rule.action.value if rule is not None else "none",
            pattern=rule.pattern if rule is not None else None,
        )
        if rule is None or rule.action is RouteAction.UNKNOWN:
            unrouted += 1
            continue
        outcomes.append(dispatch(mail, recipient, rule, svc.settings, svc.audit))
    if unrouted:
        # The routed recipients are on their way (and dedupe on redrive); this one waits
        # in the DLQ for a rule, with the reason.
        raise PermanentError(
            f"no routing rule for {unrouted} of {len(recipients)} envelope recipient(s)"
        )
    return "routed" if any(o != "dropped" for o in outcomes) else "dropped"


def dispatch(
    mail: MailRef, recipient: str, rule: RouteRule, settings: Settings, audit: AuditLog
) -> str:
    """Apply the verdict table to ``rule`` for ``recipient`` and start the action."""
    target, options = rule_options(rule.target)
    spam_label = options.get("spam_label", "")
    decision = decide(rule.action, mail.verdicts, has_spam_label=bool(spam_label))
    if decision.disposition in {Disposition.DROP, Disposition.REFUSE_BOUNCE}:
        audit_drop(
            audit, mail, recipient, rule_pattern=rule.pattern, action=rule.action, decision=decision
        )
        log_event(
            "mail dropped by policy",
            event_type=EVENT_TYPE,
            action=rule.action.value,
            outcome=decision.disposition.value,
            reason=decision.reason,
            message_id_hash=hash_id(mail.provider_message_id),
        )
        return "dropped"
    if rule.action is RouteAction.GMAIL:
        labels = (
            tuple(label.strip() for label in options.get("labels", "").split(",") if label.strip())
            or settings.gmail_labels
        )
        spam = decision.disposition is Disposition.SPAM_LABEL
        if spam:
            labels = (*(label for label in labels if label != "INBOX"), spam_label)
        if not target:
            raise PermanentError("gmail route has no target mailbox")
        enqueue(
            settings.gmail_queue_name,
            GmailRequest(
                recipient=recipient,
                mailbox=normalise(target),
                labels=labels,
                never_mark_spam=options.get("never_mark_spam", "true").lower() != "false",
                spam=spam,
                mail=mail,
            ),
        )
        return "gmail"
    if rule.action is RouteAction.BOUNCE:
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
    if rule.action is RouteAction.FREESCOUT:
        _to_bridge(mail, recipient, settings)
        return "freescout"
    raise PermanentError("routing rule has an unknown action")


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


def _stored(note: SesNotification) -> S3Location:
    """Where SES put the raw MIME; checked, so a missing object dead-letters here, now."""
    from botocore.exceptions import ClientError

    action = note.receipt.action
    if not action.bucket_name or not action.object_key:
        raise PoisonMessageError("receipt notification has no S3 action (bucket and key)")
    try:
        aws_client("s3").head_object(Bucket=action.bucket_name, Key=action.object_key)
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", ""))
        if code in {"404", "NoSuchKey", "NotFound"}:
            raise PermanentError("raw message is missing from S3") from err
        raise TransientError(f"cannot check the raw message in S3 ({code})") from err
    return S3Location(bucket=action.bucket_name, key=action.object_key)


def audit_drop(
    audit: AuditLog,
    mail: MailRef,
    recipient: str,
    *,
    rule_pattern: str,
    action: RouteAction,
    decision: Decision,
    actor: str = ACTOR,
) -> None:
    """The audit record of mail not delivered on purpose: verdicts, rule, time, hashes."""
    verdicts = mail.verdicts.as_strings()
    audit.record(
        "refuse_bounce" if decision.disposition is Disposition.REFUSE_BOUNCE else "drop",
        actor=actor,
        reason=decision.reason,
        details={
            "source": mail.source.value,
            "message_hash": hash_id(mail.rfc_message_id or mail.provider_message_id) or "",
            "recipient_hash": hash_id(recipient) or "",
            "rule_hash": hash_id(rule_pattern) or "",
            "rule_action": action.value,
            "condition": decision.condition,
            "received_at": mail.received_at.isoformat(),
            **{f"verdict_{name}": value for name, value in verdicts.items()},
        },
    )
