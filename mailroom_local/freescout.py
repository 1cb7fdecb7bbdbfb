"""A local FreeScout that speaks the API & Webhooks module's HTTP shape, with fault injection.

Conversations and threads live in memory and are written to ``<state_dir>/freescout/`` for
people to read; the newest ``faults.WINDOW`` are kept. Faults as in ``mailroom_local.faults``;
``GET /_control/conversations[?since=ID]`` shows what is held (newer than ID), bypassing faults
and auth.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask, Response, request

from mailroom_local import faults

Reply = tuple[dict[str, Any], int] | tuple[dict[str, Any], int, dict[str, str]]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(status: int, message: str, path: str | None = None) -> Reply:
    body: dict[str, Any] = {"message": message}
    if path is not None:
        body = {
            "message": "Error occurred",
            "_embedded": {"errors": [{"path": path, "message": message, "source": "JSON"}]},
        }
    return body, status


def _created(entity: dict[str, Any]) -> Response:
    """FreeScout's 201: the new id in ``Resource-ID``, the entity as the body."""
    return Response(
        json.dumps(entity),
        status=201,
        headers={"Resource-ID": str(entity["id"])},
        mimetype="application/json",
    )


def create_app(*, api_key: str, state_dir: Path, mailbox_ids: tuple[int, ...] = (1, 2, 3)) -> Flask:
    app = Flask("freescout-standin")
    lock = threading.Lock()
    store: dict[str, Any] = {"conversations": {}, "next_id": 1}
    out = state_dir / "freescout"
    out.mkdir(parents=True, exist_ok=True)

    def save(conversation: dict[str, Any]) -> None:
        (out / f"conversation-{conversation['id']}.json").write_text(json.dumps(conversation))
        held = store["conversations"]
        while len(held) > faults.WINDOW:
            oldest = next(iter(held))
            held.pop(oldest)
            (out / f"conversation-{oldest}.json").unlink(missing_ok=True)

    def next_id() -> int:
        value = int(store["next_id"])
        store["next_id"] = value + 1
        return value

    def attachments(raw: Any) -> list[dict[str, Any]]:
        kept = []
        for item in raw if isinstance(raw, list) else []:
            if not isinstance(item, dict) or not item.get("fileName") or not item.get("mimeType"):
                continue  # FreeScout skips incomplete attachments without an error
            try:
                size = len(base64.b64decode(str(item.get("data", "")), validate=True))
            except (binascii.Error, ValueError):
                continue
            kept.append({"id": next_id(), "fileName": item["fileName"], "size": size})
        return kept

    def thread(raw: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": next_id(),
            "type": raw.get("type"),
            "body": raw.get("text"),
            "createdAt": _now(),
            "_embedded": {"attachments": attachments(raw.get("attachments"))},
        }

    faults.install(app, lambda status: {"message": "Injected fault"})

    @app.before_request
    def authenticate() -> Any:
        if request.path.startswith("/_control"):
            return None
        key = request.headers.get("X-FreeScout-API-Key") or request.args.get("api_key")
        if key != api_key:
            return _error(401, "Not Authorized")
        return None

    @app.get("/_control/conversations")
    def every_conversation() -> Reply:
        """What the stand-in holds, for tests and the demo; faults and auth do not apply."""
        since = request.args.get("since", type=int, default=0)
        with lock:
            held = [c for i, c in store["conversations"].items() if i > since]
        return {"conversations": held}, 200

    @app.post("/api/conversations")
    def create() -> Any:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _error(400, "Invalid JSON", "body")
        for name in ("type", "mailboxId", "subject", "customer", "threads"):
            if not body.get(name):
                return _error(400, "This value should not be blank.", name)
        if not isinstance(body["threads"], list):
            return _error(400, "'threads' parameter must be an array", "threads")
        if body["mailboxId"] not in mailbox_ids:
            return _error(400, "Mailbox not found", "mailboxId")
        with lock:
            conversation = {
                "id": next_id(),
                "type": body["type"],
                "mailboxId": body["mailboxId"],
                "subject": body["subject"],
                "status": body.get("status", "active"),
                "state": "published",
                "customer": body["customer"],
                "createdAt": _now(),
                "_embedded": {"threads": [thread(t) for t in reversed(body["threads"])]},
            }
            store["conversations"][conversation["id"]] = conversation
            save(conversation)
        return _created(conversation)

    @app.get("/api/conversations")
    def search() -> Reply:
        args = request.args
        found = list(store["conversations"].values())
        if "mailboxId" in args:
            found = [c for c in found if str(c["mailboxId"]) == args["mailboxId"]]
        if "customerEmail" in args:
            found = [c for c in found if c["customer"].get("email") == args["customerEmail"]]
        if "subject" in args:
            found = [c for c in found if c["subject"].lower() == args["subject"].lower()]
        if "createdSince" in args:
            found = [c for c in found if c["createdAt"] >= args["createdSince"]]
        return {
            "_embedded": {"conversations": found},
            "page": {"size": 50, "totalElements": len(found), "totalPages": 1, "number": 1},
        }, 200

    @app.get("/api/conversations/<int:conversation_id>")
    def get(conversation_id: int) -> Reply:
        conversation = store["conversations"].get(conversation_id)
        if conversation is None:
            return _error(404, "Not Found")
        return conversation, 200

    @app.delete("/api/conversations/<int:conversation_id>")
    def delete(conversation_id: int) -> Any:
        """FreeScout's delete (the probe cleans up after itself): 204, or 404."""
        with lock:
            if store["conversations"].pop(conversation_id, None) is None:
                return _error(404, "Not Found")
            (out / f"conversation-{conversation_id}.json").unlink(missing_ok=True)
        return Response(status=204)

    @app.post("/api/conversations/<int:conversation_id>/threads")
    def add_thread(conversation_id: int) -> Any:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not body.get("type") or not body.get("text"):
            return _error(400, "This value should not be blank.", "text")
        with lock:
            conversation = store["conversations"].get(conversation_id)
            if conversation is None:
                return _error(404, "Not Found")
            created = thread(body)
            conversation["_embedded"]["threads"].insert(0, created)
            save(conversation)
        return _created(created)

    return app
