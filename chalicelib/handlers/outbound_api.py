"""POST /v1/outbound: a signed outbound request, validated and published to the outbound topic.

For product code without AWS credentials. The signature (``auth.verify_signature``) must be
fresh and made with a current or previous secret; each signature is accepted once (a
conditional write of its signed content), so a captured request cannot be replayed within
the tolerance either. The answer is 202 once the request is on the FIFO topic, which then
dedupes by correlation id for five minutes and the sender for the idempotency window.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping

from chalicelib import claimcheck
from chalicelib.auth import SignatureRejected, verify_signature
from chalicelib.clients.aws import aws_client
from chalicelib.delivery_log import DeliveryLog, DeliveryStatus
from chalicelib.errors import error_class
from chalicelib.handlers.http import (
    HttpReply,
    Refused,
    check_size,
    error,
    guarded,
    parse_json,
    validate,
)
from chalicelib.logging import log_event, log_outcome
from chalicelib.models.outbound import OutboundEmail
from chalicelib.secrets import OUTBOUND_SIGNING_SECRET, get_secrets
from chalicelib.settings import get_settings
from chalicelib.suppression import normalise

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
        log_event("outbound request refused", event_type=EVENT_TYPE, reason=err.reason)
        return error(401, "unauthorized", err.reason)
    email = validate(
        OutboundEmail, parse_json(body, keep_rejected=False), body, keep_rejected=False
    )
    signed = hashlib.sha256(f"{timestamp}.".encode() + body).hexdigest()
    _accept_once(signed, expires_at=timestamp + settings.signature_tolerance_seconds + 60)
    try:
        claimcheck.publish(
            settings.outbound_topic_arn,
            email.model_dump_json(by_alias=True, exclude_defaults=True),
            group_key=normalise(email.to[0]),
            deduplication_id=email.correlation_id,
        )
    except BaseException:
        _forget(signed)  # the caller's retry of this very request must not look like a replay
        raise
    # The message is on its way even if this write fails.
    DeliveryLog.for_settings(settings, aws_client("dynamodb")).record_quietly(
        email.correlation_id, DeliveryStatus.QUEUED
    )
    log_outcome(
        EVENT_TYPE,
        message_id=None,
        outcome="queued",
        duration_ms=0.0,
        correlation_id=email.correlation_id,
    )
    return HttpReply(202, {"status": "queued", "correlation_id": email.correlation_id})


def _accept_once(signed: str, *, expires_at: int) -> None:
    """Record the signature's use; a second use within its lifetime is a replay (401)."""
    from botocore.exceptions import ClientError

    try:
        aws_client("dynamodb").put_item(
            TableName=get_settings().state_table,
            Item={
                "PK": {"S": SIGNATURE_PREFIX + signed},
                "SK": {"S": "v1"},
                "expires_at": {"N": str(max(expires_at, int(time.time()) + 60))},
            },
            ConditionExpression="attribute_not_exists(PK)",
        )
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
        log_event("outbound request refused", event_type=EVENT_TYPE, reason="replayed signature")
        raise Refused(
            error(401, "unauthorized", "replayed signature", hint="sign each request afresh")
        ) from None


def _forget(signed: str) -> None:
    try:
        aws_client("dynamodb").delete_item(
            TableName=get_settings().state_table,
            Key={"PK": {"S": SIGNATURE_PREFIX + signed}, "SK": {"S": "v1"}},
        )
    except Exception as err:  # the publish error is the one the caller needs to see
        log_event("could not forget signature", event_type=EVENT_TYPE, error_class=error_class(err))


submit = guarded(EVENT_TYPE, _submit)
