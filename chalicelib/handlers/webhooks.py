"""POST /webhooks/postmark/inbound: verify, validate, claim-check and publish to SNS FIFO.

Answers follow Postmark's retry rules: only 2xx stops retries, 403 drops the message, so
we never answer 403. 401 (bad credentials) and 5xx (our outage) are retried by Postmark
for ~10 hours, which is what makes a misconfiguration lose nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime

from pydantic import ValidationError

from chalicelib import claimcheck
from chalicelib.auth import basic_auth_ok, header
from chalicelib.clients.aws import aws_client
from chalicelib.errors import MailroomError, TransientError, error_class
from chalicelib.handlers.http import HttpReply, error
from chalicelib.logging import hash_id, log_event, log_outcome
from chalicelib.models.postmark_inbound import PostmarkInbound
from chalicelib.secrets import WEBHOOK_BASIC_AUTH, SecretUnavailable, get_secrets
from chalicelib.settings import get_settings

EVENT_TYPE = "postmark_inbound_webhook"


def postmark_inbound(headers: Mapping[str, str], body: bytes) -> HttpReply:
    """Handle one inbound POST; never raises."""
    try:
        return _handle(headers, body)
    except SecretUnavailable as err:
        log_event(
            "webhook secrets unavailable", event_type=EVENT_TYPE, error_class=error_class(err)
        )
        return error(503, "unavailable", "credentials store unavailable; retry later")
    except MailroomError as err:
        log_event("webhook failed", event_type=EVENT_TYPE, error_class=error_class(err))
        return error(503, "unavailable", "temporarily unable to accept mail; retry later")
    except Exception as err:
        log_event("webhook crashed", event_type=EVENT_TYPE, error_class=error_class(err))
        return error(500, "internal_error", "unexpected error; retry later")


def _handle(headers: Mapping[str, str], body: bytes) -> HttpReply:
    settings = get_settings()
    declared = header(headers, "Content-Length")
    if len(body) > settings.max_webhook_bytes or (
        declared is not None and declared.isdigit() and int(declared) > settings.max_webhook_bytes
    ):
        return error(413, "payload_too_large", f"body exceeds {settings.max_webhook_bytes} bytes")
    if not basic_auth_ok(headers, get_secrets().values(WEBHOOK_BASIC_AUTH)):
        _keep("quarantine", body[: settings.quarantine_max_bytes], reason="unauthenticated")
        return error(401, "unauthorized", "missing or wrong credentials")
    try:
        decoded = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        _keep("rejected", body, reason="invalid JSON")
        return error(400, "invalid_json", "body is not valid JSON")
    try:
        email = PostmarkInbound.model_validate(decoded)
    except ValidationError as err:
        fields = sorted({".".join(str(p) for p in e["loc"]) or "(body)" for e in err.errors()})
        _keep("rejected", body, reason="invalid payload")
        return error(400, "invalid_payload", "payload fails validation", fields=fields)
    _publish(email, body.decode("utf-8"))
    log_outcome(EVENT_TYPE, message_id=email.message_id, outcome="accepted", duration_ms=0.0)
    return HttpReply(200, {"status": "accepted", "message_id": email.message_id})


def message_group(recipient: str) -> str:
    """FIFO group per mailbox; a hash, because group ids show up in consoles and logs."""
    return hashlib.sha256(recipient.encode("utf-8")).hexdigest()[:64]


def _publish(email: PostmarkInbound, raw: str) -> None:
    settings = get_settings()
    message = claimcheck.check_in(raw)
    try:
        aws_client("sns").publish(
            TopicArn=settings.inbound_topic_arn,
            Message=message,
            MessageGroupId=message_group(email.recipient or "unknown"),
            MessageDeduplicationId=email.message_id,
        )
    except Exception as err:
        raise TransientError("publish to the inbound topic failed") from err


def _keep(prefix: str, body: bytes, *, reason: str) -> None:
    """Store a body we did not accept, keyed by its SHA-256 so retries overwrite, not pile up."""
    settings = get_settings()
    digest = hashlib.sha256(body).hexdigest()
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    key = f"{prefix}/{day}/{digest}.json" if prefix == "quarantine" else f"{prefix}/{digest}.json"
    try:
        aws_client("s3").put_object(
            Bucket=settings.mail_bucket, Key=key, Body=body, Metadata={"reason": reason}
        )
    except Exception as err:
        # The answer to Postmark is what matters; it retries and we keep it next time.
        log_event("could not keep body", reason=reason, error_class=error_class(err))
    log_event("webhook body kept", reason=reason, message_id_hash=hash_id(digest))
