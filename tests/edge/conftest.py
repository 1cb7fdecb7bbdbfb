"""Edge fixtures: one poster for the three POST endpoints, signed or authenticated as each needs."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client

from app import app
from chalicelib.platform.auth import sign
from tests.conftest import SIGNING_SECRET, WEBHOOK_PASSWORD, WEBHOOK_USER, Stage

EVENTS = Path(__file__).resolve().parents[1] / "events"
ENDPOINTS = ("/webhooks/postmark/inbound", "/webhooks/postmark/events", "/v1/outbound")
Post = Callable[[str, bytes], Any]


def valid_body(path: str) -> dict[str, Any]:
    """A recorded, valid body for ``path``."""
    name = {
        "/webhooks/postmark/inbound": "postmark_inbound_basic.json",
        "/webhooks/postmark/events": "postmark_event_bounce.json",
        "/v1/outbound": "outbound_basic.json",
    }[path]
    return dict(json.loads((EVENTS / name).read_text()))


def headers_for(path: str, body: bytes) -> dict[str, str]:
    """Postmark's Basic credentials for the webhooks, a fresh signature for the outbound API."""
    headers = {"Content-Type": "application/json"}
    if path == "/v1/outbound":
        headers["X-Mailroom-Signature"] = sign(body, SIGNING_SECRET)
    else:
        token = base64.b64encode(f"{WEBHOOK_USER}:{WEBHOOK_PASSWORD}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    return headers


@pytest.fixture
def client(aws: Stage) -> Iterator[Client]:
    with Client(app, stage_name="local") as test_client:
        yield test_client


@pytest.fixture
def post(client: Client) -> Post:
    """POST ``body`` to ``path`` with valid credentials, through the handlers app.py calls."""

    def send(path: str, body: bytes) -> Any:
        return client.http.post(path, headers=headers_for(path, body), body=body)

    return send
