"""Provider feedback about mail we sent, one event per recipient, and what it changes:
the delivery log line it becomes and whether the address joins the suppression list.

Providers parse their own payloads into ``Feedback``; the decision here knows none of them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from chalicelib.mail.delivery_log import DeliveryStatus


@dataclass(frozen=True)
class Feedback:
    """One recipient's event for one sent message, with the provider's evidence."""

    provider: str
    provider_message_id: str
    status: DeliveryStatus
    event: str  # the provider's own name for it (Bounce, DeliveryDelay, ...)
    at: datetime
    recipient: str = ""
    correlation_id: str | None = None
    suppress_reason: str | None = None  # set when the address must not be mailed again
    details: dict[str, str] = field(default_factory=dict)

    @property
    def discriminator(self) -> str:
        """Tells apart this event's line from other recipients' of the same event."""
        digest = hashlib.sha256(f"{self.event}|{self.recipient}".encode()).hexdigest()
        return digest[:12]

    def log_details(self) -> dict[str, str]:
        """The delivery log line's details: the evidence, and whose id it is."""
        found = {
            "provider": self.provider,
            f"{self.provider}_message_id": self.provider_message_id,
            "event": self.event,
            **{k: v for k, v in self.details.items() if v},
        }
        if self.recipient:
            found["recipient"] = self.recipient
        return found


def trace_key(feedback: Feedback) -> str:
    """The delivery log key of ``feedback``: our correlation id, or the provider's message id
    for mail we cannot place (sent by something else through the same identity)."""
    if feedback.correlation_id:
        return feedback.correlation_id
    return f"{feedback.provider}:{feedback.provider_message_id}"
