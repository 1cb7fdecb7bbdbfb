"""Proof of an uncertain SES send: SES has no search, so only its own events (which the
feedback handler writes to the delivery log with SES's message id) show that it took a
message. Their absence proves nothing: such a key waits, and is dead-lettered at the limit.
"""

from __future__ import annotations

from chalicelib.mail.delivery_log import DeliveryLog
from chalicelib.platform.errors import TransientError

SES_MESSAGE_ID = "ses_message_id"


class SesOutcomeUnknown(TransientError):
    """An SES attempt may have sent and no SES event shows it yet; never sent again."""

    # Looking is not sending: the key keeps the time of the attempt that may have sent.
    may_have_acted = False

    def __init__(self, correlation_id: str) -> None:
        super().__init__(
            "SES may have sent this message and no SES event shows it yet; not sent again "
            "(check SES for the correlation tag, then discard or redrive)"
        )
        self.correlation_id = correlation_id


def sent_by_ses(log: DeliveryLog, correlation_id: str) -> str | None:
    """SES's message id for ``correlation_id`` from any SES event in the delivery log."""
    for event in log.history(correlation_id):
        if event.details.get("provider") == "ses" and event.details.get(SES_MESSAGE_ID):
            return event.details[SES_MESSAGE_ID]
    return None
