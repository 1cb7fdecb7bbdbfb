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

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from chalicelib.mail.delivery_log import DeliveryStatus
from chalicelib.mail.feedback import Feedback
from chalicelib.platform.errors import PoisonMessageError
from chalicelib.providers.ses.sender import PROVIDER, correlation_from_tags

# SNS's confirmation that the identity's topic is wired: not feedback, nothing to do.
IGNORED = frozenset({"AmazonSnsSubscriptionSucceeded"})

Details = Callable[[dict[str, Any], dict[str, Any]], dict[str, str]]


class MalformedFeedback(PoisonMessageError):
    """An SES notification we cannot read: not JSON, an unknown type or missing fields."""


def _s(value: Any) -> str:
    return "" if value is None else str(value)[:500]


def _bounce(obj: dict[str, Any], who: dict[str, Any]) -> dict[str, str]:
    return {
        "bounce_type": _s(obj.get("bounceType")),
        "bounce_subtype": _s(obj.get("bounceSubType")),
        "diagnostic_code": _s(who.get("diagnosticCode")),
        "status": _s(who.get("status")),
        "action": _s(who.get("action")),
        "reporting_mta": _s(obj.get("reportingMTA")),
        "feedback_id": _s(obj.get("feedbackId")),
    }


def _complaint(obj: dict[str, Any], _: dict[str, Any]) -> dict[str, str]:
    return {
        "complaint_type": _s(obj.get("complaintFeedbackType")),
        "complaint_subtype": _s(obj.get("complaintSubType")),
        "feedback_id": _s(obj.get("feedbackId")),
    }


def _delivery(obj: dict[str, Any], _: dict[str, Any]) -> dict[str, str]:
    return {
        "smtp_response": _s(obj.get("smtpResponse")),
        "reporting_mta": _s(obj.get("reportingMTA")),
        "remote_mta_ip": _s(obj.get("remoteMtaIp")),
        "processing_ms": _s(obj.get("processingTimeMillis")),
    }


def _delay(obj: dict[str, Any], who: dict[str, Any]) -> dict[str, str]:
    return {
        "delay_type": _s(obj.get("delayType")),
        "expiration_time": _s(obj.get("expirationTime")),
        "diagnostic_code": _s(who.get("diagnosticCode")),
        "status": _s(who.get("status")),
        "reporting_mta": _s(obj.get("reportingMTA")),
    }


def _reject(obj: dict[str, Any], _: dict[str, Any]) -> dict[str, str]:
    return {"reason": _s(obj.get("reason"))}


def _failure(obj: dict[str, Any], _: dict[str, Any]) -> dict[str, str]:
    return {"template": _s(obj.get("templateName")), "error": _s(obj.get("errorMessage"))}


def _subscription(obj: dict[str, Any], _: dict[str, Any]) -> dict[str, str]:
    new = obj.get("newTopicPreferences") or {}
    return {
        "contact_list": _s(obj.get("contactList")),
        "unsubscribe_all": _s(new.get("unsubscribeAll")),
    }


def _nothing(_: dict[str, Any], __: dict[str, Any]) -> dict[str, str]:
    return {}


# type → (object key, recipients key in it (None: mail.destination), status, evidence)
_TYPES: dict[str, tuple[str, str | None, DeliveryStatus, Details]] = {
    "Send": ("send", None, DeliveryStatus.SENT, _nothing),
    "Reject": ("reject", None, DeliveryStatus.REJECTED, _reject),
    "Bounce": ("bounce", "bouncedRecipients", DeliveryStatus.BOUNCED, _bounce),
    "Complaint": ("complaint", "complainedRecipients", DeliveryStatus.COMPLAINED, _complaint),
    "Delivery": ("delivery", "recipients", DeliveryStatus.DELIVERED, _delivery),
    "DeliveryDelay": ("deliveryDelay", "delayedRecipients", DeliveryStatus.DELAYED, _delay),
    "Rendering Failure": ("failure", None, DeliveryStatus.RENDERING_FAILED, _failure),
    "Subscription": ("subscription", None, DeliveryStatus.SUBSCRIPTION, _subscription),
    "Open": ("open", None, DeliveryStatus.OPENED, _nothing),
    "Click": ("click", None, DeliveryStatus.CLICKED, _nothing),
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
    try:
        body = json.loads(message)
    except ValueError as err:
        raise MalformedFeedback("SES notification is not JSON") from err
    if not isinstance(body, dict):
        raise MalformedFeedback("SES notification is not a JSON object")
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
        details = evidence(obj, recipient)
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
