"""A local Postmark speaking the Email API's HTTP shape: send, batch, outbound search.

Auth by ``X-Postmark-Server-Token`` (401 with ErrorCode 10); 415 without JSON headers; 422
with ErrorCode 300 for invalid messages and 406 for inactive recipients; ``/email/batch``
answers 200 with a per-message result, as the real one does. ``POST /_control/inactive``
``{"addresses": [...]}`` marks recipients inactive; faults as in ``mailroom_local.faults``.
The newest ``faults.WINDOW`` sends are kept (and searched); ``GET /_control/messages[?since=N]``
lists them, each with its sequence number ``Seq``.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask, request

from mailroom_local import faults

MAX_RECIPIENTS = 50
MAX_BATCH = 500
_ADDRESS = re.compile(r"[^\s<>,]+@[^\s<>,]+")


def _addresses(field: Any) -> list[str]:
    return [a.lower() for a in _ADDRESS.findall(str(field or ""))]


def create_app(*, server_token: str, state_dir: Path) -> Flask:
    app = Flask("postmark-standin")
    lock = threading.Lock()
    sent: deque[dict[str, Any]] = deque()
    counter = {"seq": 0}
    inactive: set[str] = set()
    out = state_dir / "postmark"
    out.mkdir(parents=True, exist_ok=True)
    faults.install(
        app,
        lambda status: (
            {"ErrorCode": 429, "Message": "Rate limit exceeded"}
            if status == 429
            else {"ErrorCode": status, "Message": "Injected fault"}
        ),
    )

    @app.before_request
    def authenticate() -> Any:
        if request.path.startswith("/_control"):
            return None
        if request.headers.get("X-Postmark-Server-Token") != server_token:
            return {"ErrorCode": 10, "Message": "Bad or missing Server API token."}, 401
        if request.method == "POST" and "json" not in (request.content_type or ""):
            return {"ErrorCode": 409, "Message": "JSON required"}, 415
        return None

    def accept(message: Any) -> tuple[dict[str, Any], bool]:
        if not isinstance(message, dict) or not message.get("From") or not message.get("To"):
            return {
                "ErrorCode": 300,
                "Message": "Invalid email request: From and To required.",
            }, False
        if not (message.get("TextBody") or message.get("HtmlBody")):
            return {
                "ErrorCode": 300,
                "Message": "Provide either email TextBody or HtmlBody or both.",
            }, False
        recipients = [a for f in ("To", "Cc", "Bcc") for a in _addresses(message.get(f))]
        if len(recipients) > MAX_RECIPIENTS:
            return {"ErrorCode": 300, "Message": "Too many recipients (max 50)."}, False
        blocked = [a for a in recipients if a in inactive]
        if blocked:
            return {
                "ErrorCode": 406,
                "Message": "You tried to send to recipient(s) that have been marked as inactive. "
                f"Found inactive addresses: {', '.join(blocked)}. Inactive recipients are ones "
                "that have generated a hard bounce, a spam complaint, or a manual suppression.",
            }, False
        record = {
            "MessageID": str(uuid.uuid4()),
            "SubmittedAt": datetime.now(UTC).isoformat(),
            "To": message["To"],
            "From": message["From"],
            "Subject": message.get("Subject", ""),
            "Tag": message.get("Tag", ""),
            "Metadata": message.get("Metadata") or {},
            "MessageStream": message.get("MessageStream", "outbound"),
            "Recipients": recipients,
        }
        with lock:
            counter["seq"] += 1
            record["Seq"] = counter["seq"]
            sent.append(record)
            (out / f"message-{record['MessageID']}.json").write_text(json.dumps(message))
            while len(sent) > faults.WINDOW:
                (out / f"message-{sent.popleft()['MessageID']}.json").unlink(missing_ok=True)
        reply = {k: record[k] for k in ("To", "SubmittedAt", "MessageID")}
        return {**reply, "ErrorCode": 0, "Message": "OK"}, True

    @app.post("/email")
    def email() -> Any:
        result, ok = accept(request.get_json(silent=True))
        return result, 200 if ok else 422

    @app.post("/email/batch")
    def batch() -> Any:
        messages = request.get_json(silent=True)
        if not isinstance(messages, list):
            return {"ErrorCode": 402, "Message": "Received invalid JSON input."}, 422
        if len(messages) > MAX_BATCH:
            return {"ErrorCode": 410, "Message": "Too many batch messages (max 500)."}, 422
        return (
            json.dumps([accept(m)[0] for m in messages]),
            200,
            {"Content-Type": "application/json"},
        )

    @app.get("/messages/outbound")
    def search() -> Any:
        try:
            count, offset = int(request.args["count"]), int(request.args.get("offset", 0))
        except (KeyError, ValueError):
            return {"ErrorCode": 300, "Message": "count is required (1-500)."}, 422
        wanted = {
            k[len("metadata_") :]: v for k, v in request.args.items() if k.startswith("metadata_")
        }
        with lock:
            found = [
                m
                for m in sent
                if all(m["Metadata"].get(k) == v for k, v in wanted.items())
                and request.args.get("recipient", "").lower() in ("", *m["Recipients"])
            ]
        page = [
            {
                "MessageID": m["MessageID"],
                "To": [{"Email": a, "Name": None} for a in _addresses(m["To"])],
                "Recipients": m["Recipients"],
                "From": m["From"],
                "Subject": m["Subject"],
                "Tag": m["Tag"],
                "Metadata": m["Metadata"],
                "Status": "Sent",
                "ReceivedAt": m["SubmittedAt"],
                "MessageStream": m["MessageStream"],
            }
            for m in found[offset : offset + count]
        ]
        return {"TotalCount": len(found), "Messages": page}, 200

    @app.post("/_control/inactive")
    def mark_inactive() -> Any:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("addresses"), list):
            return {"error": 'expected {"addresses": [...]}'}, 400
        with lock:
            inactive.update(a.lower() for a in body["addresses"])
        return {"inactive": sorted(inactive)}, 200

    @app.delete("/_control/inactive")
    def clear_inactive() -> Any:
        with lock:
            inactive.clear()
        return {}, 200

    @app.get("/_control/messages")
    def every_message() -> Any:
        since = request.args.get("since", type=int, default=0)
        with lock:
            return {"messages": [m for m in sent if m["Seq"] > since]}, 200

    return app
