"""What the router (and the bridge, for Postmark mail) hands the Gmail forwarder and the bouncer.

One SQS message per (email, recipient, action). A message names where the email is (S3
``raw/`` for SES, a claim-checked Postmark payload otherwise), never carries a body inline
beyond SQS's limit, and carries the routing decision so the worker does not re-route.
Per-rule options ride on the rule's target: ``box@gmail.com;labels=INBOX,Label_7;spam_label=SPAM``
or, for a bounce, ``status=5.1.1;diagnostic=mailbox does not exist``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chalicelib.mail.inbound_email import EmailSource, S3Location, delivery_key_for
from chalicelib.mail.verdicts import Verdicts
from chalicelib.platform.envelope import unwrap
from chalicelib.platform.errors import PoisonMessageError
from chalicelib.platform.payload import Model

T = TypeVar("T", bound=BaseModel)
DEFAULT_BOUNCE_STATUS = "5.1.1"
DEFAULT_BOUNCE_DIAGNOSTIC = "mailbox does not exist"
# The Gmail import's key names the target mailbox, not the envelope recipient.
GMAIL_KEY_ACTION = "gmail-mailbox"


def rule_options(target: str) -> tuple[str, dict[str, str]]:
    """``"box@x;labels=A,B;spam_label=S"`` → ``("box@x", {"labels": "A,B", ...})``."""
    head, *rest = [part.strip() for part in target.split(";")]
    if "=" in head:
        rest, head = [head, *rest], ""
    options = {}
    for part in rest:
        name, _, value = part.partition("=")
        if name.strip():
            options[name.strip().lower()] = value.strip()
    return head, options


def option_labels(options: Mapping[str, str]) -> tuple[str, ...]:
    """A Gmail rule's ``labels=A,B`` option as label ids."""
    return tuple(label.strip() for label in options.get("labels", "").split(",") if label.strip())


class MailRef(Model):
    """Where one received email is and what the receiving MTA said about it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    source: EmailSource
    provider_message_id: str
    received_at: datetime
    envelope_sender: str = ""
    rfc_message_id: str | None = None
    verdicts: Verdicts = Field(default_factory=Verdicts)
    location: S3Location | None = None  # SES: the raw MIME in S3
    postmark_payload: str | None = None  # Postmark: the payload, or its claim-check pointer
    # The message is itself a delivery report or auto-submitted: it never gets a report.
    auto_report: bool = False
    # The address the receiving MTA's SPF verdict names (Received-SPF envelope-from), if stated.
    spf_mailfrom: str | None = None

    def key(self, recipient: str, action: str) -> str:
        """``delivery_key`` without loading the email (the router passed the Message-ID)."""
        return delivery_key_for(
            self.rfc_message_id, self.source, self.provider_message_id, recipient, action
        )


class GmailRequest(Model):
    """Import ``mail`` into the Gmail ``mailbox`` for ``recipient``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: str = "gmail"
    recipient: str
    mailbox: str = Field(min_length=3)
    labels: tuple[str, ...]
    never_mark_spam: bool = True
    spam: bool = False
    mail: MailRef

    def key(self) -> str:
        """The import's idempotency key, one per (Message-ID, mailbox, action), without
        loading the email (the Gmail forwarder uses the loaded email's Message-ID)."""
        return delivery_key_for(
            self.mail.rfc_message_id,
            self.mail.source,
            self.mail.provider_message_id,
            self.mailbox,
            GMAIL_KEY_ACTION,
        )


class BounceRequest(Model):
    """Bounce ``mail`` for ``recipient`` with a per-recipient DSN status."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: str = "bounce"
    recipient: str
    status: str = DEFAULT_BOUNCE_STATUS
    diagnostic: str = DEFAULT_BOUNCE_DIAGNOSTIC
    mail: MailRef


def parse_request(body: str, model: type[T]) -> T:
    """The request in an SQS body (raw, or in an SNS envelope); malformed is poison."""
    message, _ = unwrap(body)
    try:
        return model.model_validate_json(message)
    except ValidationError as err:
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in err.errors()})
        raise PoisonMessageError(f"not a {model.__name__}: {', '.join(fields)}") from err
