"""A local Gmail API: OAuth token refresh, ``users.messages.import`` (JSON, media, multipart and
resumable upload), list (with ``q=rfc822msgid:``), get; ``users.labels`` list and create;
imports and labels kept per mailbox.

Every mailbox has Gmail's system labels; ``POST .../labels`` adds a user label ``Label_<n>``.
An import naming a label id the mailbox does not have is refused as Gmail refuses it (400,
``Invalid label: <id>``), before anything is stored.

Import de-duplicates on the RFC ``Message-ID`` per user, as Gmail reportedly does, unless
``dedupe=False`` (so tests can show mailroom does not rely on it). Errors use Google's JSON
error shape. Faults as in ``mailroom_local.faults``, plus ``POST /_control/gmail-faults``:
``{"reason": "rateLimitExceeded", "status": 403, "count": 1}`` (the next import requests get
that error), ``{"revoked": true}`` (the token endpoint answers ``invalid_grant``) and
``{"fail_after_store": 1, "status": 500}`` (the next import is stored, then answered 500;
with ``"delay_ms"`` instead, answered only after that delay, so the client times out).
``GET /_control/mailboxes`` counts the imports per mailbox (the newest ``faults.WINDOW`` of
each are kept).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
import time
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from flask import Flask, request

from mailroom_local import faults

# The system labels every Gmail mailbox has; their ids are their names.
SYSTEM_LABELS = (
    "INBOX",
    "SPAM",
    "TRASH",
    "UNREAD",
    "STARRED",
    "IMPORTANT",
    "SENT",
    "DRAFT",
    "CATEGORY_PERSONAL",
    "CATEGORY_SOCIAL",
    "CATEGORY_PROMOTIONS",
    "CATEGORY_UPDATES",
    "CATEGORY_FORUMS",
)


def _google_error(
    status: int, reason: str, message: str, code: str | None = None
) -> tuple[dict[str, Any], int]:
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "errors": [{"reason": reason, "message": message, "domain": "global"}],
    }
    if code is not None:
        error["status"] = code
    return {"error": error}, status


def _system_label(label_id: str) -> dict[str, str]:
    return {
        "id": label_id,
        "name": label_id,
        "type": "system",
        "messageListVisibility": "hide",
        "labelListVisibility": "labelHide",
    }


def create_app(
    *,
    client_id: str,
    client_secret: str,
    refresh_token: str,
    state_dir: Path,
    dedupe: bool = True,
) -> Flask:
    app = Flask("gmail-standin")
    lock = threading.Lock()
    tokens: set[str] = set()
    mailboxes: dict[str, dict[str, dict[str, Any]]] = {}
    user_labels: dict[str, dict[str, dict[str, str]]] = {}  # user → label id → label
    sessions: dict[str, dict[str, Any]] = {}
    gmail_faults: dict[str, Any] = {}
    out = state_dir / "gmail"
    out.mkdir(parents=True, exist_ok=True)
    faults.install(app, lambda status: _google_error(status, "backendError", "Injected")[0])

    @app.post("/_control/gmail-faults")
    def set_gmail_faults() -> Any:
        body = request.get_json(silent=True) or {}
        with lock:
            gmail_faults.clear()
            gmail_faults.update(body)
        return dict(gmail_faults), 200

    @app.get("/_control/mailboxes")
    def mailbox_counts() -> Any:
        with lock:
            return {user: len(box) for user, box in mailboxes.items()}, 200

    def import_fault() -> Any:
        """The injected error for an import request, if one is armed."""
        with lock:
            if gmail_faults.get("count", 0) > 0:
                gmail_faults["count"] -= 1
                status = int(gmail_faults.get("status", 429))
                reason = str(gmail_faults.get("reason", "rateLimitExceeded"))
                return _google_error(status, reason, "Injected")
        return None

    def after_store(answer: tuple[dict[str, Any], int]) -> Any:
        with lock:
            armed = gmail_faults.get("fail_after_store", 0) > 0
            if armed:
                gmail_faults["fail_after_store"] -= 1
            delay_ms = int(gmail_faults.get("delay_ms", 0))
        if armed and delay_ms:
            time.sleep(delay_ms / 1000)  # the injected latency: the client times out
            return answer
        if armed:
            return _google_error(int(gmail_faults.get("status", 500)), "backendError", "Injected")
        return answer

    @app.post("/token")
    def token() -> Any:
        form = request.form
        if gmail_faults.get("revoked"):
            return {
                "error": "invalid_grant",
                "error_description": "Token has been expired or revoked.",
            }, 400
        if (form.get("client_id"), form.get("client_secret")) != (client_id, client_secret):
            return {"error": "invalid_client", "error_description": "Unauthorized"}, 401
        if form.get("grant_type") != "refresh_token" or form.get("refresh_token") != refresh_token:
            return {
                "error": "invalid_grant",
                "error_description": "Token has been expired or revoked.",
            }, 400
        access = secrets.token_urlsafe(24)
        with lock:
            tokens.add(access)
        return {
            "access_token": access,
            "expires_in": 3599,
            "token_type": "Bearer",
            "scope": "https://www.googleapis.com/auth/gmail.insert",
        }, 200

    @app.before_request
    def authenticate() -> Any:
        if request.path.startswith(("/_control", "/token")):
            return None
        presented = (request.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        if presented not in tokens:
            return _google_error(401, "authError", "Invalid Credentials")
        return None

    def unknown_label(user: str, labels: list[str]) -> Any:
        """Gmail's answer to an import naming a label id ``user`` does not have, or None."""
        with lock:
            have = user_labels.get(user, {})
            missing = [x for x in labels if x not in SYSTEM_LABELS and x not in have]
        if missing:
            message = f"Invalid label: {missing[0]}"
            return _google_error(400, "invalidArgument", message, "INVALID_ARGUMENT")
        return None

    @app.get("/gmail/v1/users/<user>/labels")
    def list_labels(user: str) -> Any:
        with lock:
            labels = [*map(_system_label, SYSTEM_LABELS), *user_labels.get(user, {}).values()]
        return {"labels": labels}, 200

    @app.post("/gmail/v1/users/<user>/labels")
    def create_label(user: str) -> Any:
        name = str((request.get_json(silent=True) or {}).get("name") or "").strip()
        if not name:
            return _google_error(400, "invalidArgument", "Invalid label name", "INVALID_ARGUMENT")
        with lock:
            labels = user_labels.setdefault(user, {})
            taken = [x["name"] for x in labels.values()] + list(SYSTEM_LABELS)
            if name.lower() in {x.lower() for x in taken}:
                message = "Label name exists or conflicts"
                return _google_error(409, "alreadyExists", message, "ALREADY_EXISTS")
            label_id = f"Label_{len(labels) + 1}"
            labels[label_id] = {
                "id": label_id,
                "name": name,
                "type": "user",
                "messageListVisibility": "show",
                "labelListVisibility": "labelShow",
            }
            return dict(labels[label_id]), 200

    def store(user: str, raw: bytes, labels: list[str]) -> tuple[dict[str, Any], int]:
        parsed = message_from_bytes(raw, policy=default_policy)
        message_id = str(parsed.get("Message-ID", "")).strip().lower()
        with lock:
            box = mailboxes.setdefault(user, {})
            for existing in box.values() if dedupe else ():
                if message_id and existing["rfc_message_id"] == message_id:
                    return {k: existing[k] for k in ("id", "threadId", "labelIds")}, 200
            gid = secrets.token_hex(8)
            box[gid] = {
                "id": gid,
                "threadId": gid,
                "labelIds": labels,
                "rfc_message_id": message_id,
                "raw": base64.urlsafe_b64encode(raw).decode(),
                "subject": str(parsed.get("Subject", "")),
            }
            (out / f"{user}-{gid}.eml").write_bytes(raw)
            while len(box) > faults.WINDOW:
                oldest = next(iter(box))
                box.pop(oldest)
                (out / f"{user}-{oldest}.eml").unlink(missing_ok=True)
        return {"id": gid, "threadId": gid, "labelIds": labels}, 200

    @app.post("/gmail/v1/users/<user>/messages/import")
    def import_json(user: str) -> Any:
        body = request.get_json(silent=True) or {}
        try:
            raw = base64.urlsafe_b64decode(str(body["raw"]) + "==")
        except (KeyError, binascii.Error, ValueError):
            return _google_error(
                400,
                "badRequest",
                "'raw' RFC822 payload message string or uploading message via /upload/* URL"
                " required",
            )
        labels = list(body.get("labelIds") or [])
        return unknown_label(user, labels) or store(user, raw, labels)

    @app.post("/upload/gmail/v1/users/<user>/messages/import")
    def import_upload(user: str) -> Any:
        fault = import_fault()
        if fault is not None:
            return fault
        kind = request.args.get("uploadType", "media")
        if kind == "resumable":
            session = secrets.token_hex(8)
            metadata = request.get_json(silent=True) or {}
            labels = list(metadata.get("labelIds") or [])
            refused = unknown_label(user, labels)
            if refused is not None:
                return refused
            with lock:
                sessions[session] = {"user": user, "labels": labels}
            location = f"{request.host_url}upload/session/{session}"
            return "", 200, {"Location": location}
        if kind == "media":
            return after_store(store(user, request.get_data(), []))
        if kind == "multipart":
            boundary = request.mimetype_params.get("boundary", "")
            parts = [
                p for p in request.get_data().split(b"--" + boundary.encode()) if p.strip(b"-\r\n")
            ]
            if len(parts) < 2:
                return _google_error(400, "badRequest", "multipart body needs metadata and media")
            metadata = json.loads(parts[0].split(b"\r\n\r\n", 1)[1] or b"{}")
            media = parts[1].split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n")
            labels = list(metadata.get("labelIds") or [])
            return unknown_label(user, labels) or after_store(store(user, media, labels))
        return _google_error(400, "badRequest", f"unsupported uploadType {kind}")

    @app.put("/upload/session/<session>")
    def resumable_upload(session: str) -> Any:
        with lock:
            started = sessions.pop(session, None)
        if started is None:
            return _google_error(404, "notFound", "Upload session not found.")
        return after_store(store(started["user"], request.get_data(), started["labels"]))

    @app.get("/gmail/v1/users/<user>/messages")
    def listing(user: str) -> Any:
        box = mailboxes.get(user, {})
        query = request.args.get("q", "")
        wanted = query.removeprefix("rfc822msgid:").strip().lower() if query else None
        messages = [
            {"id": m["id"], "threadId": m["threadId"]}
            for m in box.values()
            if wanted is None or m["rfc_message_id"] == wanted
        ]
        return {"messages": messages, "resultSizeEstimate": len(messages)}, 200

    @app.get("/gmail/v1/users/<user>/messages/<gid>")
    def get(user: str, gid: str) -> Any:
        found = mailboxes.get(user, {}).get(gid)
        if found is None:
            return _google_error(404, "notFound", "Requested entity was not found.")
        shown = {k: found[k] for k in ("id", "threadId", "labelIds")}
        if request.args.get("format") == "raw":
            shown["raw"] = found["raw"]
        else:
            shown["payload"] = {"headers": [{"name": "Subject", "value": found["subject"]}]}
        return shown, 200

    return app
