"""SES feedback queue (SNS → SQS, both shapes) into the one suppression list and the
delivery log, per recipient, idempotent and order-safe.

Every write is keyed by the event itself (its time, type and recipient), so a redelivered
event rewrites the same items and events applied in any order settle to the same state; a
later ``Delivery`` never removes a suppression. A notification that carries no correlation
tag (identity notifications) is placed by SES's message id, which the sender recorded;
mail we did not send is logged under ``ses:<message id>``. Unknown types and malformed
notifications are poison: dead-lettered with the reason by the batch runner.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from chalicelib.handlers.services import services
from chalicelib.mail.feedback import trace_key
from chalicelib.mail.message_ids import correlation_for
from chalicelib.platform.batch import LogContext, SqsRecord, process_batch
from chalicelib.platform.envelope import unwrap
from chalicelib.providers.ses.feedback import parse_feedback
from chalicelib.providers.ses.sender import PROVIDER

EVENT_TYPE = "ses_feedback"


def handle_batch(event: Mapping[str, Any], remaining_time_ms: Any = None) -> dict[str, Any]:
    """Lambda entry point for the SES feedback queue."""
    return process_batch(
        event, handle_record, event_type=EVENT_TYPE, remaining_time_ms=remaining_time_ms
    )


def handle_record(record: SqsRecord, ctx: LogContext) -> str:
    svc = services()
    message, _ = unwrap(record.body)
    events = parse_feedback(message)
    if not events:
        return "ignored"
    first = events[0]
    correlation_id = first.correlation_id or correlation_for(
        svc.dynamodb, svc.settings.state_table, PROVIDER, first.provider_message_id
    )
    ctx.correlation_id = correlation_id
    ctx.message_id = first.provider_message_id
    for feedback in events:
        placed = replace(feedback, correlation_id=correlation_id)
        if placed.suppress_reason:
            svc.suppressions.add(
                placed.recipient, reason=placed.suppress_reason, source=PROVIDER, at=placed.at
            )
        svc.delivery_log.record(
            trace_key(placed),
            placed.status,
            at=placed.at,
            details=placed.log_details(),
            discriminator=placed.discriminator,
        )
    return first.status.value
