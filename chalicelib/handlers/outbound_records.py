"""What the outbound sender writes about each message: after a send, the claim completed, the
delivery log line, the provider's id map and the trace index step, in one batch write; and the
suppressed and dead-lettered ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chalicelib.handlers.services import Services
from chalicelib.mail import trace_index
from chalicelib.mail.delivery_log import DeliveryStatus
from chalicelib.mail.message_ids import lookup_item
from chalicelib.mail.outbound import OutboundEmail
from chalicelib.mail.suppression import normalise
from chalicelib.platform.aws import aws_client, put_items
from chalicelib.platform.errors import EffectNotRecorded, error_class, is_transient
from chalicelib.platform.errors import reason_of as reason_for
from chalicelib.platform.idempotency import Claim
from chalicelib.platform.logging import log_event

EVENT_TYPE = "outbound_sender"  # the log lines of both modules are the sender's


@dataclass
class Prepared:
    """One record made ready to send: its request, its claim, who not to send to, and
    which provider takes it."""

    email: OutboundEmail
    claim: Claim
    blocked: set[str] = field(default_factory=set)  # normalised recipients not to send to
    provider: str = "postmark"

    def nobody_left(self) -> bool:
        return all(normalise(a) in self.blocked for a in self.email.to)


def record_sent(
    svc: Services, sent: list[tuple[Prepared, str]], found_by: str
) -> list[str | BaseException]:
    """Complete the claims of sent messages and log them, in one batch write.

    A claim left uncompleted is marked uncertain (or its lock expires): the retry
    searches Postmark first, so a failed write here never becomes a second send.
    """
    claims = [
        svc.idempotency.completed_item(
            prepared.claim, {"message_id": message_id, "provider": prepared.provider}
        )
        for prepared, message_id in sent
    ]
    lines = [
        svc.delivery_log.item(
            prepared.email.correlation_id,
            DeliveryStatus.SENT,
            details={
                f"{prepared.provider}_message_id": message_id,
                "provider": prepared.provider,
                "found_by": found_by,
                "recipients": str(len(prepared.email.recipients) - len(prepared.blocked)),
            },
        )
        for prepared, message_id in sent
    ]
    lookups = [
        lookup_item(
            prepared.provider,
            message_id,
            prepared.email.correlation_id,
            ttl_days=svc.settings.idempotency_ttl_days,
        )
        for prepared, message_id in sent
        if message_id
    ]
    steps = [
        item
        for prepared, message_id in sent
        for item in svc.index.items(_step(prepared, "sent", message_id=message_id))
    ]
    try:
        left = put_items(
            aws_client("dynamodb"),
            svc.settings.state_table,
            claims + lines + lookups + steps,
        )
    except Exception as err:
        log_event(
            "claims not completed after send",
            event_type=EVENT_TYPE,
            error_class=error_class(err),
        )
        left = claims
    unwritten = {item["PK"]["S"] for item in left}
    outcome = "sent" if found_by == "send" else "already_sent"
    answers: list[str | BaseException] = []
    for (prepared, _), claim in zip(sent, claims, strict=True):
        if claim["PK"]["S"] in unwritten:
            failure = EffectNotRecorded("sent, but the idempotency record was not completed")
            svc.idempotency.settle_failure(prepared.claim, failure)
            answers.append(failure)
        else:
            answers.append(outcome)
    return answers


def record_suppressed(svc: Services, prepared: Prepared) -> str:
    svc.idempotency.complete(prepared.claim.key, {"outcome": "suppressed"})
    svc.delivery_log.record_quietly(
        prepared.email.correlation_id,
        DeliveryStatus.SUPPRESSED,
        recipients=", ".join(sorted(prepared.blocked)),
    )
    svc.index.write([_step(prepared, "suppressed")])
    return "suppressed"


def record_failed(svc: Services, prepared: Prepared, err: BaseException) -> BaseException:
    svc.idempotency.settle_failure(prepared.claim, err)
    if not is_transient(err):
        reason = reason_for(err)
        svc.delivery_log.record_quietly(
            prepared.email.correlation_id, DeliveryStatus.DEAD_LETTERED, reason=reason
        )
        svc.index.write([_step(prepared, "dead_lettered", reason=reason)])
    return err


def _step(
    prepared: Prepared, outcome: str, *, message_id: str = "", reason: str = ""
) -> trace_index.Mark:
    """The trace index's step for one outbound email: by its ids and every address on it."""
    email = prepared.email
    return trace_index.sent(
        email.correlation_id,
        outcome=outcome,
        sender=email.from_,
        recipients=email.recipients,
        provider=prepared.provider if message_id else "",
        message_id=message_id,
        details={"reason": reason} if reason else None,
    )
