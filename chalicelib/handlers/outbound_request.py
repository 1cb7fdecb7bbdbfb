"""The outbound sender's input and timing rules: one record parsed into the outbound model
by the API's own parser (malformed is poison, keeping its correlation id for the delivery
log), and the wait before an uncertain send may be proven by the provider's records.
"""

from __future__ import annotations

import json
import time

from chalicelib.mail.outbound import OutboundEmail, parse_outbound
from chalicelib.platform import claimcheck
from chalicelib.platform.batch import SqsRecord
from chalicelib.platform.envelope import unwrap
from chalicelib.platform.errors import PoisonMessageError, ProofNotYetPossible
from chalicelib.platform.idempotency import Claim
from chalicelib.platform.payload import PayloadRejected


def wait_for_proof(claim: Claim, delay_seconds: int) -> None:
    """A provider's records can lag a message it has just taken (Postmark's search, SES's
    events): looking right after an attempt that may have sent could miss it and send
    again. Wait until the previous attempt is ``delay_seconds`` old (not counted as an
    attempt; SQS brings it back)."""
    previous = claim.previous_attempt_at or claim.first_attempt_at
    if time.time() - previous < delay_seconds:
        raise ProofNotYetPossible("previous attempt too recent for Postmark's search; waiting")


class InvalidRequest(PoisonMessageError):
    """The record is not a valid outbound request; carries its correlation id if it has one."""

    def __init__(self, reason: str, correlation_id: str | None) -> None:
        super().__init__(reason)
        self.correlation_id = correlation_id


def parse(record: SqsRecord) -> OutboundEmail:
    """The outbound request in ``record``, by the API's own parser; malformed is poison."""
    message, _ = unwrap(record.body)
    payload = claimcheck.check_out(message)
    try:
        return parse_outbound(payload)
    except PayloadRejected as err:
        try:
            named = json.loads(payload).get("correlation_id")
        except (ValueError, AttributeError):
            named = None
        raise InvalidRequest(
            err.reason, named if isinstance(named, str) and named else None
        ) from err
