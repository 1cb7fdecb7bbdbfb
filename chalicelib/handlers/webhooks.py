"""POST /webhooks/postmark/inbound: verify, validate, claim-check and publish to SNS FIFO.

Answers follow Postmark's retry rules: only 2xx stops retries and 403 drops the message, so
we never answer 403. 401 (bad credentials) and 5xx (our outage) are retried by Postmark
for hours, which is what makes a misconfiguration lose nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from chalicelib import claimcheck
from chalicelib.handlers.http import (
    HttpReply,
    guarded,
    parse_json,
    require_basic_auth,
    validate,
)
from chalicelib.logging import log_outcome
from chalicelib.models.postmark_inbound import PostmarkInbound
from chalicelib.settings import get_settings

EVENT_TYPE = "postmark_inbound_webhook"


def _inbound(headers: Mapping[str, str], body: bytes) -> HttpReply:
    require_basic_auth(headers, body)
    email = validate(
        PostmarkInbound, parse_json(body, keep_rejected=True), body, keep_rejected=True
    )
    claimcheck.publish(
        get_settings().inbound_topic_arn,
        body.decode("utf-8"),
        group_key=email.recipient or "unknown",
        deduplication_id=email.message_id,
    )
    log_outcome(EVENT_TYPE, message_id=email.message_id, outcome="accepted", duration_ms=0.0)
    return HttpReply(200, {"status": "accepted", "message_id": email.message_id})


postmark_inbound = guarded(EVENT_TYPE, _inbound)
