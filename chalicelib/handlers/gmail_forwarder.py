"""Gmail forwarder: a ``GmailRequest`` → ``users.messages.import`` into the target mailbox, once.

The idempotency key is one per (Message-ID, target mailbox, action) (``mailbox_key``), so an
SES and a Postmark copy of one Message-ID, or two recipients routed to one mailbox, import
once. An uncertain key (an earlier import may have been stored:
timeout, 5xx, crash) is settled by an ``rfc822msgid:`` search before importing again; Gmail's
undocumented Message-ID dedup is not relied on. ``invalid_grant`` dead-letters with the
re-authorize reason and leaves a health record (``GMAILAUTH#<mailbox>``) for ``mailroom health``;
a label the mailbox does not have sends the forwarder back to the route (a fixed rule's labels
are used), else the mail is dead-lettered at once with the label and the fix.
Imports are paced per mailbox (Gmail: 25 units each, 15,000 units per user per minute).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from chalicelib.handlers.dispatch import gmail_labels, load_mail, trace_done
from chalicelib.handlers.services import Services, queue_handler, services
from chalicelib.mail.actions import GMAIL_KEY_ACTION, GmailRequest, parse_request, rule_options
from chalicelib.mail.inbound_email import InboundEmail, delivery_key, delivery_key_for
from chalicelib.mail.routing import RouteAction, resolve
from chalicelib.mail.suppression import normalise
from chalicelib.platform.aws import aws_client
from chalicelib.platform.batch import LogContext, SqsRecord
from chalicelib.platform.idempotency import COMPLETED, KeyState
from chalicelib.platform.logging import hash_id, log_event
from chalicelib.platform.settings import Settings
from chalicelib.providers.gmail.client import (
    GmailAuthRevoked,
    GmailLabelNotFound,
    parameter_name,
)

EVENT_TYPE = "gmail_forwarder"
ACTION = "gmail"
HEALTH_PREFIX = "GMAILAUTH#"


def handle_record(record: SqsRecord, ctx: LogContext) -> str:
    """Import one email into one mailbox; return the outcome or raise."""
    request = parse_request(record.body, GmailRequest)
    ctx.message_id = request.mail.provider_message_id
    ctx.mailbox_id = hash_id(request.mailbox)
    svc = services()
    # Gmail takes the raw bytes as they are: only the header fields are parsed here.
    email, raw = load_mail(request.mail, request.recipient, headers_only=True)
    key = mailbox_key(email, request.mailbox)
    store = svc.idempotency
    claim = store.claim(key)
    if claim.state is KeyState.COMPLETED:
        return "duplicate"
    uncertain = claim.state is KeyState.UNCERTAIN
    if not uncertain:
        # Records keyed by envelope recipient (before the key named the mailbox) live out
        # their TTL: a completed one is this import, an unfinished one is proven first.
        earlier = store.inspect(delivery_key(email, request.recipient, ACTION))
        if earlier is not None and earlier.status == COMPLETED:
            store.complete(key, earlier.result)
            return "duplicate"
        uncertain = earlier is not None
    try:
        client = svc.gmail.client(request.mailbox)
        if uncertain:
            if email.rfc_message_id:
                found = client.find_by_message_id(email.rfc_message_id)
                if found is not None:
                    result = {"gmail_id": found, "mailbox_hash": ctx.mailbox_id or ""}
                    store.complete(key, result)
                    _trace(request, key, result, "already_done")
                    return "already_done"
            else:
                # Nothing to search by: importing again may duplicate; losing it is worse.
                log_event("uncertain import without Message-ID", event_type=EVENT_TYPE)
        svc.gmail.pace(request.mailbox)
        try:
            result = client.import_message(
                raw, labels=request.labels, never_mark_spam=request.never_mark_spam
            )
        except GmailLabelNotFound:
            # Gmail stored nothing. The request holds the labels the router chose; after the
            # operator fixes the route, a redrive must import with the route's labels.
            labels = route_labels(svc, request)
            if labels is None or labels == request.labels:
                raise
            log_event("labels taken from the route as it is now", event_type=EVENT_TYPE)
            result = client.import_message(
                raw, labels=labels, never_mark_spam=request.never_mark_spam
            )
    except GmailLabelNotFound as err:
        store.settle_failure(claim, err)
        raise route_label_missing(err, request.mailbox) from err
    except Exception as err:
        if isinstance(err, GmailAuthRevoked):
            record_auth_failure(svc.settings, request.mailbox, err.reason)
            svc.gmail.healthy.discard(request.mailbox)
        store.settle_failure(claim, err)
        raise
    store.complete(key, {**result, "mailbox_hash": ctx.mailbox_id or ""})
    _trace(request, key, {**result, "mailbox_hash": ctx.mailbox_id or ""}, "imported")
    if request.mailbox not in svc.gmail.healthy:
        clear_auth_failure(svc.settings, request.mailbox)
        svc.gmail.healthy.add(request.mailbox)
    return "imported"


def route_labels(svc: Services, request: GmailRequest) -> tuple[str, ...] | None:
    """The labels the recipient's rule gives now (read past the cache), or None if the rule
    no longer imports the recipient's mail into this mailbox."""
    rule = resolve(request.recipient, svc.routes.fresh_rules())
    if rule is None or rule.action is not RouteAction.GMAIL:
        return None
    mailbox, options = rule_options(rule.target)
    if normalise(mailbox) != request.mailbox:
        return None
    return gmail_labels(options, svc.settings.gmail_labels, spam=request.spam)


def route_label_missing(err: GmailLabelNotFound, mailbox: str) -> GmailLabelNotFound:
    """``err`` with the reason an operator acts on: which label, which mailbox, what to run.

    The reason is logged, so the mailbox is named by its ``mailbox_id`` (the hash in the
    log lines); the dead letter's body holds the address (``mailroom dlq peek``)."""
    reason = (
        f"Gmail mailbox_id {hash_id(mailbox)} (address: `mailroom dlq peek`) has no label "
        f"{err.label}: fix the route with `mailroom routes set PATTERN --target "
        f"'MAILBOX;labels=...'`, which lists the mailbox's labels, then redrive"
    )
    return GmailLabelNotFound(
        reason, label=err.label, status_code=err.status_code, error_code=err.error_code
    )


def _trace(request: GmailRequest, key: str, result: dict[str, str], outcome: str) -> None:
    """The import's step in the email's story, found by its Gmail id."""
    trace_done(services().index, request, key, result, action=ACTION, outcome=outcome)


def mailbox_key(email: InboundEmail, mailbox: str) -> str:
    """The import's idempotency key: one per (Message-ID, target mailbox, action), so two
    envelope recipients routed to one mailbox, or an SES and a Postmark copy, import once."""
    return delivery_key_for(
        email.rfc_message_id,
        email.source,
        email.provider_message_id,
        mailbox,
        GMAIL_KEY_ACTION,
    )


def record_auth_failure(settings: Settings, mailbox: str, reason: str) -> None:
    """The health record the operator CLI reads: this mailbox needs re-authorization."""
    try:
        aws_client("dynamodb").put_item(
            TableName=settings.state_table,
            Item={
                "PK": {"S": HEALTH_PREFIX + mailbox},
                "SK": {"S": "v1"},
                "status": {"S": "reauthorize"},
                "reason": {"S": reason},
                "parameter": {"S": settings.parameter(parameter_name(mailbox))},
                "at": {"S": datetime.now(UTC).isoformat(timespec="seconds")},
            },
        )
    except Exception:  # the DLQ reason says the same; the health record is a convenience
        log_event("gmail health record not written", event_type=EVENT_TYPE)


def clear_auth_failure(settings: Settings, mailbox: str) -> None:
    """After a successful import: the mailbox's authorization works again."""
    try:
        aws_client("dynamodb").delete_item(
            TableName=settings.state_table,
            Key={"PK": {"S": HEALTH_PREFIX + mailbox}, "SK": {"S": "v1"}},
        )
    except Exception:
        log_event("gmail health record not cleared", event_type=EVENT_TYPE)


def auth_failures(settings: Settings, client: Any) -> list[dict[str, str]]:
    """Mailboxes whose Gmail authorization failed, for ``mailroom health`` (one Scan)."""
    found: list[dict[str, str]] = []
    kwargs: dict[str, Any] = {
        "TableName": settings.state_table,
        "FilterExpression": "begins_with(PK, :prefix)",
        "ExpressionAttributeValues": {":prefix": {"S": HEALTH_PREFIX}},
    }
    while True:
        page = client.scan(**kwargs)
        for item in page.get("Items", []):
            found.append(
                {
                    "mailbox": item["PK"]["S"][len(HEALTH_PREFIX) :],
                    **{k: v["S"] for k, v in item.items() if k not in {"PK", "SK"} and "S" in v},
                }
            )
        if "LastEvaluatedKey" not in page:
            return found
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


handle_batch = queue_handler(handle_record, event_type=EVENT_TYPE, queue="gmail-forwarder")
