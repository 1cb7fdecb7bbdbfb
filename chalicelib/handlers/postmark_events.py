"""POST /webhooks/postmark/events: Postmark's outbound events into the suppression list and
the delivery log, behind the same Basic credentials as the inbound webhook.

An event is answered 2xx only once it is stored (S3 ``events/``) and applied; a duplicate is
answered 2xx and changes nothing; 5xx on an outage, so Postmark retries. Never 403, which
Postmark would not retry.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime

from chalicelib.handlers.http import HttpReply, guarded, parse_body, require_basic_auth
from chalicelib.handlers.services import Services, services
from chalicelib.mail.delivery_log import DeliveryStatus
from chalicelib.platform.aws import aws_client
from chalicelib.platform.logging import log_event
from chalicelib.providers.postmark.events import PostmarkEvent, RecordType, parse_postmark_event

EVENT_TYPE = "postmark_events_webhook"
EVENT_PREFIX = "POSTMARK_EVENT#"
SOURCE = "postmark"
_LOGGED = {
    RecordType.DELIVERY: DeliveryStatus.DELIVERED,
    RecordType.OPEN: DeliveryStatus.OPENED,
    RecordType.CLICK: DeliveryStatus.CLICKED,
    RecordType.BOUNCE: DeliveryStatus.BOUNCED,
    RecordType.SPAM_COMPLAINT: DeliveryStatus.COMPLAINED,
}


def _events(headers: Mapping[str, str], body: bytes) -> HttpReply:
    require_basic_auth(headers, body)
    event = parse_body(parse_postmark_event, body, keep_rejected=True)
    svc = services()
    settings, dynamodb = svc.settings, svc.dynamodb
    key = event.dedupe_key(body)
    marker = {"PK": {"S": EVENT_PREFIX + key}, "SK": {"S": "v1"}}
    seen = dynamodb.get_item(TableName=settings.state_table, Key=marker, ConsistentRead=True)
    if "Item" in seen:
        return _answer(event, {"status": "duplicate"})
    aws_client("s3").put_object(
        Bucket=settings.mail_bucket,
        Key=f"events/{datetime.now(UTC):%Y-%m-%d}/{key}.json",
        Body=body,
        ContentType="application/json",
    )
    _apply(event, svc)
    # Marked last: a crash before this line replays the same writes (same keys, same event
    # times), and once marked, a duplicate changes nothing at all.
    dynamodb.put_item(
        TableName=settings.state_table,
        Item={
            **marker,
            "record_type": {"S": event.raw_record_type},
            "expires_at": {"N": str(int(time.time()) + settings.idempotency_ttl_days * 86_400)},
        },
    )
    return _answer(event, {"status": "stored", "record_type": event.raw_record_type})


def _apply(event: PostmarkEvent, svc: Services) -> None:
    """Suppression list and delivery log changes for ``event`` (idempotent writes)."""
    suppressions = svc.suppressions
    when = event.occurred_at
    kind = event.record_type
    if kind is RecordType.SPAM_COMPLAINT or (
        kind is RecordType.BOUNCE and (event.type == "HardBounce" or event.inactive)
    ):
        suppressions.add(event.address, reason=event.type or kind.value, source=SOURCE, at=when)
    elif kind is RecordType.SUBSCRIPTION_CHANGE:
        if event.suppress_sending:
            reason = event.suppression_reason or "ManualSuppression"
            suppressions.add(event.address, reason=reason, source=SOURCE, at=when)
        else:
            suppressions.remove(event.address, source=SOURCE, at=when)
    status = _LOGGED.get(kind)
    if status is not None and event.correlation_id:
        details = {
            "recipient": event.address,
            "postmark_message_id": event.message_id,
            "provider": SOURCE,
            **event.evidence,
        }
        if event.type:
            details["type"] = event.type
        svc.delivery_log.record(event.correlation_id, status, at=when, details=details)


def _answer(event: PostmarkEvent, body: dict[str, str]) -> HttpReply:
    if event.record_type is RecordType.UNKNOWN:
        log_event("unknown Postmark event type", event_type=EVENT_TYPE)
    return HttpReply(
        200,
        body,
        message_id=event.message_id or None,
        correlation_id=event.correlation_id,
        action=event.raw_record_type[:40],
    )


postmark_events = guarded(EVENT_TYPE, _events)
