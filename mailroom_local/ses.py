"""A local SES for what moto lacks: ``SendBounce`` in SES's query/XML shape, with SES's rules,
and (``mailroom_local.ses_send``) SESv2 sending with feedback.

It keeps the newest ``faults.WINDOW`` bounces it accepted (``GET /_control/bounces``) and
received messages, answers ``Throttling`` to a
second call within one second, and ``MessageRejected`` for a message it did not receive or
received more than 24 hours ago. ``make receive`` (and tests) register received messages with
``POST /_control/received {"message_id", "received_at"}``. Faults as in ``mailroom_local.faults``.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.sax.saxutils import escape

from flask import Flask, request

from mailroom_local import faults, ses_send

NAMESPACE = "http://ses.amazonaws.com/doc/2010-12-01/"
MAX_AGE = timedelta(hours=24)


def _error(status: int, code: str, message: str) -> tuple[str, int, dict[str, str]]:
    body = (
        f'<ErrorResponse xmlns="{NAMESPACE}"><Error><Type>Sender</Type>'
        f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
        f"<RequestId>{secrets.token_hex(8)}</RequestId></ErrorResponse>"
    )
    return body, status, {"Content-Type": "text/xml"}


def _members(form: Any, prefix: str) -> list[dict[str, str]]:
    """``Prefix.member.N.Field`` query parameters as a list of dicts."""
    found: dict[int, dict[str, str]] = {}
    for name, value in form.items():
        if name.startswith(prefix + ".member."):
            number, _, field = name[len(prefix) + 8 :].partition(".")
            found.setdefault(int(number), {})[field] = value
    return [found[n] for n in sorted(found)]


def create_app(
    *,
    clock: Any = time.time,
    min_interval_seconds: float = 1.0,
    publish: Callable[[], ses_send.Publish | None] = lambda: None,
) -> Flask:
    """SendBounce here; the sending half (SESv2) in ``ses_send``, whose feedback goes to
    ``publish()`` (the local stack's SNS feedback topic, once provisioned)."""
    app = Flask("ses-standin")
    ses_send.install(app, publish)
    lock = threading.Lock()
    received: dict[str, datetime] = {}
    bounces: deque[dict[str, Any]] = deque(maxlen=faults.WINDOW)
    last_call: list[float] = []
    faults.install(app, lambda status: _error(status, "ServiceUnavailable", "Injected")[0])

    @app.post("/_control/received")
    def register() -> Any:
        body = request.get_json(silent=True) or {}
        at = datetime.fromisoformat(str(body.get("received_at") or datetime.now(UTC).isoformat()))
        with lock:
            received[str(body.get("message_id", ""))] = at
            while len(received) > faults.WINDOW:
                received.pop(next(iter(received)))
        return {"registered": len(received)}, 200

    @app.get("/_control/bounces")
    def listing() -> Any:
        with lock:
            return {"bounces": list(bounces)}, 200

    @app.post("/")
    def action() -> Any:
        form = request.form
        if form.get("Action") != "SendBounce":
            return _error(400, "InvalidAction", f"not supported here: {form.get('Action')}")
        now = clock()
        with lock:
            if last_call and now - last_call[-1] < min_interval_seconds:
                return _error(400, "Throttling", "Maximum SendBounce rate exceeded.")
            last_call[:] = [now]
            original = form.get("OriginalMessageId", "")
            at = received.get(original)
            if at is None:
                return _error(400, "MessageRejected", "Original message not found.")
            if datetime.fromtimestamp(now, UTC) - at > MAX_AGE:
                return _error(400, "MessageRejected", "Original message is older than 24 hours.")
            bounce_id = secrets.token_hex(12)
            bounces.append(
                {
                    "MessageId": bounce_id,
                    "OriginalMessageId": original,
                    "BounceSender": form.get("BounceSender", ""),
                    "Recipients": _members(form, "BouncedRecipientInfoList"),
                }
            )
        body = (
            f'<SendBounceResponse xmlns="{NAMESPACE}"><SendBounceResult>'
            f"<MessageId>{bounce_id}</MessageId></SendBounceResult>"
            f"<ResponseMetadata><RequestId>{secrets.token_hex(8)}</RequestId>"
            "</ResponseMetadata></SendBounceResponse>"
        )
        return body, 200, {"Content-Type": "text/xml"}

    return app
