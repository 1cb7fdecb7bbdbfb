"""POST /v1/outbound: a signed outbound request, validated and published to the outbound topic.

For product code without AWS credentials. The signature (``auth.verify_signature``) must be
fresh and made with a current or previous secret; each signature is accepted once, so a
captured request cannot be replayed within the tolerance either. A signature is marked used
only after its message is on the FIFO topic: a crash in between leaves it unmarked, so the
caller's honest retry is accepted, and the topic's five-minute deduplication by correlation
id (then the sender's idempotency record) makes the second publish harmless. The answer is
202 once the request is on the topic. The body is validated with ``parse_outbound``, the
sender's own parser, so a 202 can never be poison later.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping

from chalicelib.handlers.http import (
    HttpReply,
    Refused,
    check_size,
    error,
    guarded,
    parse_body,
    sqs_safe,
)
from chalicelib.handlers.services import services
from chalicelib.mail.delivery_log import DeliveryStatus
from chalicelib.mail.outbound import parse_outbound
from chalicelib.mail.suppression import normalise
from chalicelib.platform import claimcheck
from chalicelib.platform.auth import SignatureRejected, verify_signature
from chalicelib.platform.aws import aws_client
from chalicelib.platform.errors import error_class
from chalicelib.platform.logging import log_event
from chalicelib.platform.secrets import OUTBOUND_SIGNING_SECRET, get_secrets
from chalicelib.platform.settings import get_settings

EVENT_TYPE = "outbound_api"
SIGNATURE_PREFIX = "SIGNATURE#"


def _submit(headers: Mapping[str, str], body: bytes) -> HttpReply:
    check_size(headers, body)
    settings = get_settings()
    try:
        timestamp = verify_signature(
            headers,
            body,
            get_secrets().values(OUTBOUND_SIGNING_SECRET),
            tolerance_seconds=settings.signature_tolerance_seconds,
        )
    except SignatureRejected as err:
        return error(401, "unauthorized", err.reason, reason=err.reason)
    email = parse_body(parse_outbound, body, keep_rejected=False)
    signed = hashlib.sha256(f"{timestamp}.".encode() + body).hexdigest()
    _refuse_replay(signed)
    claimcheck.publish(
        settings.outbound_topic_arn,
        sqs_safe(email.model_dump_json(by_alias=True, exclude_defaults=True)),
        group_key=normalise(email.to[0]),
        deduplication_id=email.correlation_id,
    )
    _mark_used(signed, expires_at=timestamp + settings.signature_tolerance_seconds + 60)
    # The message is on its way even if this write fails.
    services().delivery_log.record_quietly(email.correlation_id, DeliveryStatus.QUEUED)
    return HttpReply(
        202,
        {"status": "queued", "correlation_id": email.correlation_id},
        correlation_id=email.correlation_id,
    )


def _signature_key(signed: str) -> dict[str, dict[str, str]]:
    return {"PK": {"S": SIGNATURE_PREFIX + signed}, "SK": {"S": "v1"}}


def _refuse_replay(signed: str) -> None:
    """401 if this signed request was accepted (published) before."""
    seen = aws_client("dynamodb").get_item(
        TableName=get_settings().state_table, Key=_signature_key(signed), ConsistentRead=True
    )
    if "Item" in seen:
        raise Refused(
            error(
                401,
                "unauthorized",
                "replayed signature",
                reason="replayed signature",
                hint="sign each request afresh",
            )
        )


def _mark_used(signed: str, *, expires_at: int) -> None:
    """Record the signature's use, after its message was published.

    A failure here is logged, not answered: the message is queued, and a replay of it would
    be deduplicated by its correlation id anyway.
    """
    try:
        aws_client("dynamodb").put_item(
            TableName=get_settings().state_table,
            Item={
                **_signature_key(signed),
                "expires_at": {"N": str(max(expires_at, int(time.time()) + 60))},
            },
        )
    except Exception as err:
        log_event("could not mark signature", event_type=EVENT_TYPE, error_class=error_class(err))


submit = guarded(EVENT_TYPE, _submit)
