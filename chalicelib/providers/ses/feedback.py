"""SES sending feedback in both shapes into one ``Feedback`` per recipient.

Identity notifications carry ``notificationType`` (Bounce, Complaint, Delivery);
configuration-set event publishing carries ``eventType`` (Send, Reject, Bounce, Complaint,
Delivery, Open, Click, Rendering Failure, DeliveryDelay, Subscription) and ``mail.tags``.
Table-driven: each type names its object, its recipients and its evidence. An unknown type
or a notification without the fields its type needs is poison: dead-lettered with why.
Suppress on Permanent bounces and on complaints; Transient and Undetermined bounces and
delays are recorded only (SES's own rule, reference F.2).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from chalicelib.mail.delivery_log import DeliveryStatus
from chalicelib.mail.feedback import Feedback
from chalicelib.platform.errors import PoisonMessageError
from chalicelib.platform.payload import json_object
from chalicelib.providers.ses.sender import PROVIDER, correlation_from_tags

# SNS's confirmation that the identity's topic is wired: not feedback, nothing to do.
IGNORED = frozenset({"AmazonSnsSubscriptionSucceeded"})


class MalformedFeedback(PoisonMessageError):
    """An SES notification we cannot read: not JSON, an unknown type or missing fields."""


def _s(value: Any) -> str:
    return "" if value is None else str(value)[:500]


# What each type keeps as evidence: our name → SES's field in the type's object (a dotted
# path for a nested one); "recipient." reads the recipient's own entry instead.
_BOUNCE = {
    "bounce_type": "bounceType",
    "bounce_subtype": "bounceSubType",
    "diagnostic_code": "recipient.diagnosticCode",
    "status": "recipient.status",
    "action": "recipient.action",
    "reporting_mta": "reportingMTA",
    "feedback_id": "feedbackId",
}
_COMPLAINT = {
    "complaint_type": "complaintFeedbackType",
    "complaint_subtype": "complaintSubType",
    "feedback_id": "feedbackId",
}
_DELIVERY = {
    "smtp_response": "smtpResponse",
    "reporting_mta": "reportingMTA",
    "remote_mta_ip": "remoteMtaIp",
    "processing_ms": "processingTimeMillis",
}
_DELAY = {
    "delay_type": "delayType",
    "expiration_time": "expirationTime",
    "diagnostic_code": "recipient.diagnosticCode",
    "status": "recipient.status",
    "reporting_mta": "reportingMTA",
}
_REJECT = {"reason": "reason"}
_FAILURE = {"template": "templateName", "error": "errorMessage"}
_SUBSCRIPTION = {
    "contact_list": "contactList",
    "unsubscribe_all": "newTopicPreferences.unsubscribeAll",
}


def _evidence(
    fields: Mapping[str, str], obj: dict[str, Any], recipient: dict[str, Any]
) -> dict[str, str]:
    """The evidence ``fields`` name, as strings ("" for what SES left out)."""
    found = {}
    for name, path in fields.items():
        first, *rest = path.split(".")
        value = recipient if first == "recipient" else obj.get(first)
        for part in rest:
            value = (value or {}).get(part)
        found[name] = _s(value)
    return found


# type → (object key, recipients key in it (None: mail.destination), status, evidence)
_TYPES: dict[str, tuple[str, str | None, DeliveryStatus, Mapping[str, str]]] = {
    "Send": ("send", None, DeliveryStatus.SENT, {}),
    "Reject": ("reject", None, DeliveryStatus.REJECTED, _REJECT),
    "Bounce": ("bounce", "bouncedRecipients", DeliveryStatus.BOUNCED, _BOUNCE),
    "Complaint": ("complaint", "complainedRecipients", DeliveryStatus.COMPLAINED, _COMPLAINT),
    "Delivery": ("delivery", "recipients", DeliveryStatus.DELIVERED, _DELIVERY),
    "DeliveryDelay": ("deliveryDelay", "delayedRecipients", DeliveryStatus.DELAYED, _DELAY),
    "Rendering Failure": ("failure", None, DeliveryStatus.RENDERING_FAILED, _FAILURE),
    "Subscription": ("subscription", None, DeliveryStatus.SUBSCRIPTION, _SUBSCRIPTION),
    "Open": ("open", None, DeliveryStatus.OPENED, {}),
    "Click": ("click", None, DeliveryStatus.CLICKED, {}),
}


def _time(*candidates: Any) -> datetime:
    for raw in candidates:
        if isinstance(raw, str) and raw:
            try:
                return datetime.fromisoformat(raw.replace("Z", "+00:00")).astimezone(UTC)
            except ValueError:
                continue
    raise MalformedFeedback("SES notification without a readable timestamp")


def _suppress(kind: str, details: dict[str, str]) -> str | None:
    if kind == "Complaint":
        return "complaint"
    if kind == "Bounce" and details.get("bounce_type") == "Permanent":
        return f"bounce:{details.get('bounce_subtype') or 'General'}"
    if kind == "Subscription" and details.get("unsubscribe_all") == "True":
        return "unsubscribed"
    return None


def parse_feedback(message: str) -> list[Feedback]:
    """Every recipient's ``Feedback`` in one SES notification (the SNS ``Message``)."""
    body = json_object(message, what="SES notification", error=MalformedFeedback)
    kind = body.get("eventType") or body.get("notificationType")
    if kind in IGNORED:
        return []
    if not isinstance(kind, str) or kind not in _TYPES:
        raise MalformedFeedback(f"unknown SES notification type {str(kind)[:40]!r}")
    key, recipients_key, status, evidence = _TYPES[kind]
    mail = body.get("mail")
    obj = body.get(key) if key in body else {}
    if not isinstance(mail, dict) or not mail.get("messageId") or not isinstance(obj, dict):
        raise MalformedFeedback(f"SES {kind} notification without mail.messageId or {key}")
    at = _time(obj.get("timestamp"), mail.get("timestamp"))
    raw_tags = mail.get("tags")
    tags: dict[str, list[str]] = raw_tags if isinstance(raw_tags, dict) else {}
    correlation_id = correlation_from_tags(tags)
    if recipients_key is None:
        who: list[dict[str, Any]] = [{"emailAddress": a} for a in mail.get("destination") or []]
    else:
        raw = obj.get(recipients_key) or []
        who = [{"emailAddress": r} if isinstance(r, str) else r for r in raw]
    if not who or not all(isinstance(w, dict) and w.get("emailAddress") for w in who):
        raise MalformedFeedback(f"SES {kind} notification names no recipient")
    found = []
    for recipient in who:
        details = _evidence(evidence, obj, recipient)
        found.append(
            Feedback(
                provider=PROVIDER,
                provider_message_id=str(mail["messageId"])[:256],
                status=status,
                event=kind,
                at=at,
                recipient=str(recipient["emailAddress"])[:320],
                correlation_id=correlation_id,
                suppress_reason=_suppress(kind, details),
                details=details,
            )
        )
    return found
