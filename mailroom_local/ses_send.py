"""The SES stand-in's sending half (SESv2 REST shapes): what moto 5.2.5 lacks or does not do.

``SendEmail`` (raw content) answers a message id and then emits feedback as SES would, in both
shapes (configuration-set events with the message's tags, and identity notifications for
Bounce, Complaint and Delivery), driven by the mailbox simulator's addresses: ``success@``,
``bounce@``, ``ooto@``, ``complaint@`` and ``suppressionlist@simulator.amazonses.com`` (a
``+label`` is allowed); any other address is delivered. ``GetAccount`` and the account-level
suppression list (Put/Get/DeleteSuppressedDestination) are kept in memory; a suppressed
recipient gets a Permanent ``OnAccountSuppressionList`` bounce.

Feedback faults: ``POST /_control/feedback {"delay_ms", "duplicate", "reverse"}`` delays it,
sends every notification twice, or sends a message's notifications newest first. Request
faults (throttling, 5xx, an answer lost after accepting) come from ``mailroom_local.faults``.
``GET /_control/sent`` lists accepted messages; ``GET /_control/feedback`` what was emitted.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from typing import Any
from urllib.parse import unquote

from flask import Flask, request

from mailroom_local import faults

Publish = Callable[[str], None]
SIMULATOR = "simulator.amazonses.com"
MAX_SEND_RATE = 14.0


def _error(status: int, code: str, message: str) -> tuple[dict[str, str], int, dict[str, str]]:
    return {"__type": code, "message": message}, status, {"x-amzn-ErrorType": code}


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _outcome(address: str, suppressed: bool) -> list[tuple[str, dict[str, Any]]]:
    """The events after Send for one recipient: (eventType, its object) in SES's order."""
    local, _, domain = address.lower().partition("@")
    local = local.split("+", 1)[0]
    delivered = ("Delivery", {"smtpResponse": "250 2.6.0 Message received"})
    if suppressed:
        return [
            ("Bounce", {"bounceType": "Permanent", "bounceSubType": "OnAccountSuppressionList"})
        ]
    if domain != SIMULATOR or local in {"success", "ooto"}:
        return [delivered]
    if local == "bounce":
        return [
            (
                "Bounce",
                {
                    "bounceType": "Permanent",
                    "bounceSubType": "General",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                    "status": "5.1.1",
                },
            )
        ]
    if local == "suppressionlist":
        return [("Bounce", {"bounceType": "Permanent", "bounceSubType": "Suppressed"})]
    if local == "complaint":
        return [delivered, ("Complaint", {"complaintFeedbackType": "abuse"})]
    return [delivered]


def _notification(
    kind: str, detail: dict[str, Any], mail: dict[str, Any], address: str, at: datetime
) -> dict[str, Any]:
    """One recipient's event as configuration-set publishing shapes it."""
    when = _iso(at)
    if kind == "Send":
        return {"eventType": "Send", "mail": mail, "send": {}}
    if kind == "Delivery":
        body = {
            "timestamp": when,
            "recipients": [address],
            "smtpResponse": detail["smtpResponse"],
            "reportingMTA": "a8-70.smtp-out.amazonses.com",
            "processingTimeMillis": 120,
        }
        return {"eventType": "Delivery", "mail": mail, "delivery": body}
    if kind == "Bounce":
        who = {"emailAddress": address, "action": "failed"}
        who.update({k: detail[k] for k in ("status", "diagnosticCode") if k in detail})
        body = {
            "bounceType": detail["bounceType"],
            "bounceSubType": detail["bounceSubType"],
            "bouncedRecipients": [who],
            "timestamp": when,
            "feedbackId": secrets.token_hex(8),
            "reportingMTA": "dns; amazonses.com",
        }
        return {"eventType": "Bounce", "mail": mail, "bounce": body}
    body = {
        "complainedRecipients": [{"emailAddress": address}],
        "timestamp": when,
        "feedbackId": secrets.token_hex(8),
        "complaintFeedbackType": detail["complaintFeedbackType"],
    }
    return {"eventType": "Complaint", "mail": mail, "complaint": body}


def install(app: Flask, publish: Callable[[], Publish | None]) -> None:
    """Add SESv2's sending routes to ``app``; ``publish()`` gives the feedback topic's sender."""
    lock = threading.Lock()
    # Bounded like every stand-in's records, so a long soak does not grow the stack.
    sent: deque[dict[str, Any]] = deque(maxlen=faults.WINDOW)
    emitted: deque[dict[str, Any]] = deque(maxlen=faults.WINDOW)
    suppressed: dict[str, dict[str, str]] = {}
    feedback_faults: dict[str, Any] = {}

    def emit(notifications: list[dict[str, Any]]) -> None:
        sender = publish()
        with lock:
            faults = dict(feedback_faults)
        if faults.get("reverse"):
            notifications = list(reversed(notifications))
        copies = 2 if faults.get("duplicate") else 1
        for notification in notifications:
            body = json.dumps(notification)
            for _ in range(copies):
                with lock:
                    emitted.append(notification)
                if sender is not None:
                    sender(body)

    @app.post("/v2/email/outbound-emails")
    def send_email() -> Any:
        body = request.get_json(silent=True) or {}
        raw = (body.get("Content") or {}).get("Raw") or {}
        if not raw.get("Data"):
            return _error(400, "BadRequestException", "only raw content is supported here")
        data = base64.b64decode(raw["Data"])
        destination = body.get("Destination") or {}
        recipients = [
            a
            for key in ("ToAddresses", "CcAddresses", "BccAddresses")
            for a in destination.get(key) or []
        ]
        if not recipients:
            parsed = message_from_bytes(data)
            recipients = [a.strip() for a in str(parsed.get("To", "")).split(",") if a.strip()]
        message_id = f"0100{secrets.token_hex(6)}-{secrets.token_hex(4)}-local-000000"
        now = datetime.now(UTC)
        tags: dict[str, list[str]] = {
            str(t["Name"]): [str(t["Value"])] for t in body.get("EmailTags") or []
        }
        mail = {
            "timestamp": _iso(now),
            "source": body.get("FromEmailAddress", ""),
            "messageId": message_id,
            "destination": recipients,
            "tags": tags,
        }
        with lock:
            sent.append({"MessageId": message_id, "recipients": recipients, "tags": tags})
            blocked = {a.lower() for a in recipients if a.lower() in suppressed}
            delay = int(feedback_faults.get("delay_ms", 0))
        notifications = [{"eventType": "Send", "mail": mail, "send": {}}]
        for number, address in enumerate(recipients, start=1):
            for step, (kind, detail) in enumerate(_outcome(address, address.lower() in blocked)):
                at = now + timedelta(seconds=number + step)
                notifications.append(_notification(kind, detail, mail, address, at))
                identity = {k: v for k, v in notifications[-1].items() if k != "eventType"}
                identity["notificationType"] = kind
                identity["mail"] = {k: v for k, v in mail.items() if k != "tags"}
                notifications.append(identity)
        timer = threading.Timer(delay / 1000, emit, args=(notifications,))
        timer.daemon = True
        timer.start()
        return {"MessageId": message_id}, 200

    @app.get("/v2/email/account")
    def get_account() -> Any:
        with lock:
            count = len(sent)
        quota = {"Max24HourSend": 50000.0, "MaxSendRate": MAX_SEND_RATE, "SentLast24Hours": count}
        return {
            "SendQuota": quota,
            "SendingEnabled": True,
            "ProductionAccessEnabled": True,
            "EnforcementStatus": "HEALTHY",
        }, 200

    @app.put("/v2/email/suppression/addresses")
    def put_suppressed() -> Any:
        body = request.get_json(silent=True) or {}
        address = str(body.get("EmailAddress", "")).lower()
        if body.get("Reason") not in {"BOUNCE", "COMPLAINT"} or "@" not in address:
            return _error(400, "BadRequestException", "EmailAddress and Reason BOUNCE|COMPLAINT")
        with lock:
            suppressed[address] = {
                "Reason": str(body["Reason"]),
                "LastUpdateTime": _iso(datetime.now(UTC)),
            }
        return {}, 200

    @app.route("/v2/email/suppression/addresses/<path:address>", methods=["GET", "DELETE"])
    def one_suppressed(address: str) -> Any:
        key = unquote(address).lower()
        with lock:
            entry = suppressed.get(key)
            if entry is not None and request.method == "DELETE":
                del suppressed[key]
        if entry is None:
            return _error(404, "NotFoundException", f"{key} is not on the suppression list")
        if request.method == "DELETE":
            return {}, 200
        return {"SuppressedDestination": {"EmailAddress": key, **entry}}, 200

    @app.get("/_control/sent")
    def sent_listing() -> Any:
        with lock:
            return {"messages": list(sent), "suppressed": sorted(suppressed)}, 200

    @app.route("/_control/feedback", methods=["GET", "POST", "DELETE"])
    def feedback_control() -> Any:
        with lock:
            if request.method == "POST":
                feedback_faults.clear()
                feedback_faults.update(request.get_json(silent=True) or {})
            elif request.method == "DELETE":
                feedback_faults.clear()
            return {"faults": dict(feedback_faults), "emitted": list(emitted)}, 200
