"""What the router (and the bridge, for Postmark mail) hands the Gmail forwarder and the bouncer.

One SQS message per (email, recipient, action). A message names where the email is (S3
``raw/`` for SES, a claim-checked Postmark payload otherwise), never carries a body inline
beyond SQS's limit, and carries the routing decision so the worker does not re-route.
Per-rule options ride on the rule's target: ``box@gmail.com;labels=INBOX,Label_7;spam_label=SPAM``
or, for a bounce, ``status=5.1.1;diagnostic=mailbox does not exist``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chalicelib.mail.inbound_email import (
    EmailSource,
    InboundEmail,
    S3Location,
    delivery_key_for,
    read_raw,
)
from chalicelib.platform import claimcheck
from chalicelib.platform.envelope import unwrap
from chalicelib.platform.errors import PoisonMessageError, TransientError
from chalicelib.providers.postmark.inbound import PostmarkInbound
from chalicelib.providers.ses.receipt import Verdicts

T = TypeVar("T", bound=BaseModel)
DEFAULT_BOUNCE_STATUS = "5.1.1"
DEFAULT_BOUNCE_DIAGNOSTIC = "mailbox does not exist"


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


class MailRef(BaseModel):
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

    @classmethod
    def for_postmark(cls, payload: str, parsed: PostmarkInbound) -> MailRef:
        """The reference the bridge sends for Postmark mail with a gmail or bounce route
        (``router.dispatch``): the payload claim-checked if large, verdicts from its headers."""
        email = InboundEmail.from_postmark(parsed, parsed.recipient)
        return cls(
            source=EmailSource.POSTMARK,
            provider_message_id=parsed.message_id,
            received_at=datetime.now(UTC),
            envelope_sender=email.envelope_sender,
            rfc_message_id=email.rfc_message_id,
            verdicts=email.verdicts,
            postmark_payload=claimcheck.check_in(payload),
        )

    def load(self, recipient: str) -> tuple[InboundEmail, bytes]:
        """The normalised email for ``recipient`` and its RFC 5322 bytes (from S3, or rendered
        from the Postmark payload); malformed input is poison."""
        if self.location is not None:
            raw = read_raw(self.location.bucket, self.location.key)
            email = InboundEmail.from_mime(
                raw,
                recipients=[recipient],
                verdicts=self.verdicts,
                s3_location=self.location,
                envelope_sender=self.envelope_sender,
                provider_message_id=self.provider_message_id,
            )
            return email, raw
        if self.postmark_payload is None:
            raise PoisonMessageError("request names neither an S3 object nor a Postmark payload")
        payload = claimcheck.check_out(self.postmark_payload)
        try:
            parsed = PostmarkInbound.model_validate_json(payload)
        except ValidationError as err:
            raise PoisonMessageError("not a Postmark inbound payload") from err
        email = InboundEmail.from_postmark(parsed, recipient)
        return email, email.to_mime()

    def key(self, recipient: str, action: str) -> str:
        """``delivery_key`` without loading the email (the router passed the Message-ID)."""
        return delivery_key_for(
            self.rfc_message_id, self.source, self.provider_message_id, recipient, action
        )


class GmailRequest(BaseModel):
    """Import ``mail`` into the Gmail ``mailbox`` for ``recipient``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: str = "gmail"
    recipient: str
    mailbox: str = Field(min_length=3)
    labels: tuple[str, ...]
    never_mark_spam: bool = True
    spam: bool = False
    mail: MailRef


class BounceRequest(BaseModel):
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


def enqueue(queue_name: str, request: BaseModel) -> None:
    """Send ``request`` to a standard queue; failures are transient (the caller retries)."""
    from chalicelib.platform.aws import aws_client

    body = request.model_dump_json()
    try:
        aws_client("sqs").send_message(QueueUrl=queue_url(queue_name), MessageBody=body)
    except Exception as err:
        raise TransientError(f"send to {queue_name} failed") from err


@lru_cache(maxsize=16)
def queue_url(name: str) -> str:
    from chalicelib.platform.aws import aws_client

    return str(aws_client("sqs").get_queue_url(QueueName=name)["QueueUrl"])
