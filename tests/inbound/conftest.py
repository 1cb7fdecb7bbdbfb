"""Inbound fixtures: a Postmark payload factory, the Chalice test client and the bridge."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
from chalice.test import Client

from app import app
from chalicelib.handlers import inbound_bridge
from tests.conftest import FREESCOUT_URL, WEBHOOK_PASSWORD, WEBHOOK_USER, Stage

EVENTS = Path(__file__).resolve().parents[1] / "events"
CONVERSATIONS = f"{FREESCOUT_URL}/api/conversations"


def basic(user: str = WEBHOOK_USER, password: str = WEBHOOK_PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}


@pytest.fixture
def payload() -> Callable[..., dict[str, Any]]:
    """A Postmark inbound payload; keyword arguments override top-level fields."""
    base = json.loads((EVENTS / "postmark_inbound_basic.json").read_text())

    def make(**overrides: Any) -> dict[str, Any]:
        data = copy.deepcopy(base)
        data.update(overrides)
        return data

    return make


@pytest.fixture
def client(aws: Stage) -> Iterator[Client]:
    # The local stage sets no variables, so the moto-backed test stage stays in force.
    with Client(app, stage_name="local") as test_client:
        yield test_client


@pytest.fixture
def post(client: Client) -> Callable[..., Any]:
    def send(body: dict[str, Any] | bytes, headers: dict[str, str] | None = None) -> Any:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return client.http.post("/webhooks/postmark/inbound", headers=headers or basic(), body=raw)

    return send


@pytest.fixture
def freescout() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def bridge(aws: Stage) -> Callable[..., tuple[dict[str, Any], Any, BaseException | None]]:
    """Run one Lambda invocation of the inbound bridge, with Lambda's delete rules."""

    def run(report_batch_item_failures: bool = True) -> Any:
        return aws.run_lambda(
            "inbound-bridge",
            inbound_bridge.handle_batch,
            report_batch_item_failures=report_batch_item_failures,
        )

    return run


def created(conversation_id: int = 42, attachments: int = 1) -> dict[str, Any]:
    """FreeScout's 201 for a new conversation."""
    return {
        "method": responses.POST,
        "url": CONVERSATIONS,
        "status": 201,
        "headers": {"Resource-ID": str(conversation_id)},
        "json": {
            "id": conversation_id,
            "_embedded": {
                "threads": [
                    {"id": 7, "_embedded": {"attachments": [{"id": i} for i in range(attachments)]}}
                ]
            },
        },
    }
