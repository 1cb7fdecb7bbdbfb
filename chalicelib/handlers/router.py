"""SES router: one receipt notification → per envelope recipient, a routing decision → an action.

Per recipient in ``receipt.recipients`` (Bcc'd recipients are only there): resolve the rule,
take the one inbound decision (``chalicelib.mail.decision``: verdict table, bounce refusal),
then publish one message per (recipient, action): the Gmail forwarder's or the bouncer's queue,
or the inbound FIFO topic for FreeScout (the bridge loads the email with ``load_ses_email``).
Drops and refused bounces write an audit record. Publishing is at-least-once; every worker
dedupes on its delivery key, so a retried or redriven router message delivers nothing twice. A
failure here raises and the batch runner dead-letters it: the mail never sits only in S3.
"""

from __future__ import annotations

from chalicelib.handlers.dispatch import act
from chalicelib.handlers.services import queue_handler, services
from chalicelib.mail.actions import MailRef
from chalicelib.mail.decision import NO_RULE, UNKNOWN_ACTION, decide_inbound
from chalicelib.mail.inbound_email import EmailSource, S3Location
from chalicelib.mail.routing import resolve
from chalicelib.mail.suppression import normalise
from chalicelib.mail.trace_index import IdKind, Mark, email_key, routed
from chalicelib.platform.aws import aws_client
from chalicelib.platform.batch import LogContext, SqsRecord
from chalicelib.platform.envelope import unwrap
from chalicelib.platform.errors import PermanentError, PoisonMessageError, TransientError
from chalicelib.platform.logging import log_event, log_routing_decision
from chalicelib.providers.ses.receipt import SesNotification, is_setup_notification

EVENT_TYPE = "ses_router"
ACTOR = "router"


def handle_record(record: SqsRecord, ctx: LogContext) -> str:
    """Route every envelope recipient of one received email; raise on failure."""
    message, _ = unwrap(record.body)
    if is_setup_notification(message):
        _ignore_setup_notification()
        return "ignored"
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
        auto_report=note.auto_report,
    )
    rules = svc.routes.rules()
    recipients = list(dict.fromkeys(normalise(r) for r in note.receipt.recipients))
    key = email_key(mail.source.value, mail.provider_message_id)
    marks = [
        Mark(
            email=key,
            stage="received",
            outcome="accepted",
            at=mail.received_at,
            ids={IdKind.SES: mail.provider_message_id, IdKind.RFC: mail.rfc_message_id or ""},
            addresses={"to": recipients, "from": [mail.envelope_sender]},
            details={
                "source": mail.source.value,
                **{f"verdict_{k}": v for k, v in mail.verdicts.as_strings().items()},
            },
        )
    ]
    outcomes: list[str] = []
    unrouted: list[str] = []
    try:
        for recipient in recipients:
            rule = resolve(recipient, rules)
            action = rule.action.value if rule is not None else "none"
            log_routing_decision(
                EVENT_TYPE,
                message_id=mail.provider_message_id,
                action=action,
                pattern=rule.pattern if rule is not None else None,
            )
            decision = decide_inbound(mail, recipient, rule)
            pattern = rule.pattern if rule is not None else None
            if decision.dead_letter is not None:
                unrouted.append(decision.dead_letter)
                marks.append(
                    routed(key, recipient=recipient, rule=pattern, action=action, outcome="no_rule")
                )
                continue
            outcome = act(decision, mail, recipient, svc.settings, svc.audit)
            outcomes.append(outcome)
            marks.append(
                routed(key, recipient=recipient, rule=pattern, action=action, outcome=outcome)
            )
    finally:
        svc.index.write(marks)  # one BatchWriteItem: what was received and where it went
    if unrouted:
        # The routed recipients are on their way (and dedupe on redrive); this one waits
        # in the DLQ for a rule, with the reason.
        count = f"{len(unrouted)} of {len(recipients)} envelope recipient(s)"
        if set(unrouted) <= {NO_RULE, UNKNOWN_ACTION}:
            raise PermanentError(f"no routing rule for {count}")
        reason = next(r for r in unrouted if r not in {NO_RULE, UNKNOWN_ACTION})
        raise PermanentError(f"{reason} ({count})")
    return "routed" if any(o != "dropped" for o in outcomes) else "dropped"


def _ignore_setup_notification() -> None:
    """SES's test publish when a rule is saved: no mail behind it; said so in the audit log."""
    log_event("SES setup notification ignored", event_type=EVENT_TYPE, outcome="ignored")
    services().audit.record(
        "ignore", actor=ACTOR, reason="SES setup notification", details={"source": "ses"}
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


handle_batch = queue_handler(handle_record, event_type=EVENT_TYPE, queue="ses-inbound")
