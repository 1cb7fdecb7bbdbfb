"""POST /webhooks/postmark/inbound: verify, validate, claim-check and publish to SNS FIFO.

Answers follow Postmark's retry rules: only 2xx stops retries and 403 drops the message, so
we never answer 403. 401 (bad credentials) and 5xx (our outage) are retried by Postmark
for hours, which is what makes a misconfiguration lose nothing. The body is validated with
``parse_postmark_inbound``, the bridge's own parser, so a 200 can never be poison later.
"""

from __future__ import annotations

from collections.abc import Mapping

from chalicelib.handlers.http import HttpReply, guarded, parse_body, require_basic_auth, sqs_safe
from chalicelib.platform import claimcheck
from chalicelib.platform.payload import decode_text
from chalicelib.platform.settings import get_settings
from chalicelib.providers.postmark.inbound import NOT_INBOUND, parse_postmark_inbound

EVENT_TYPE = "postmark_inbound_webhook"


def _inbound(headers: Mapping[str, str], body: bytes) -> HttpReply:
    require_basic_auth(headers, body)
    email = parse_body(parse_postmark_inbound, body, keep_rejected=True)
    # What the bridge will parse: the body as text (a UTF-8 BOM dropped, as the parser does).
    text = sqs_safe(decode_text(body, what=NOT_INBOUND))
    claimcheck.publish(
        get_settings().inbound_topic_arn,
        text,
        group_key=email.recipient or "unknown",
        deduplication_id=email.message_id,
    )
    return HttpReply(
        200,
        {"status": "accepted", "message_id": email.message_id},
        message_id=email.message_id,
    )


postmark_inbound = guarded(EVENT_TYPE, _inbound)
