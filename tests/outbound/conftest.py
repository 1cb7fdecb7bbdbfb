"""Outbound fixtures: requests, the documented SNS contract, the signed API, the sender, and
the Postmark stand-in over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from chalice.test import Client

from app import app
from chalicelib.handlers import outbound_sender
from chalicelib.mail.delivery_log import DeliveryLog, DeliveryStatus
from chalicelib.platform.auth import sign
from chalicelib.platform.aws import reset_clients
from mailroom_local import postmark
from tests.conftest import (
    POSTMARK_TOKEN,
    REGION,
    SIGNING_SECRET,
    WEBHOOK_PASSWORD,
    WEBHOOK_USER,
    Stage,
    serve_wsgi,
)

Request = dict[str, Any]
EVENTS = Path(__file__).resolve().parents[1] / "events"


def outbound(correlation_id: str = "order-1", to: str = "ann@example.org", **extra: Any) -> Request:
    """An outbound request as the product would send it."""
    return {
        "correlation_id": correlation_id,
        "from": "Shop <shop@example.com>",
        "to": to,
        "subject": "Your receipt",
        "text_body": "Thanks for your order.",
        **extra,
    }


def publish(aws: Stage, request: Request) -> None:
    """The README's SNS contract: group = SHA-256 of the first To, dedup = correlation_id."""
    first_to = str(request["to"]).split(",")[0].strip().lower()
    boto3.client("sns", region_name=REGION).publish(
        TopicArn=aws.topics["outbound"],
        Message=json.dumps(request),
        MessageGroupId=hashlib.sha256(first_to.encode()).hexdigest(),
        MessageDeduplicationId=request["correlation_id"],
    )


def history(aws: Stage, correlation_id: str) -> list[tuple[DeliveryStatus, dict[str, str]]]:
    log = DeliveryLog(aws.state_table, client=boto3.client("dynamodb", region_name=REGION))
    return [(e.status, e.details) for e in log.history(correlation_id)]


class Standin:
    """The Postmark stand-in: its URL, what it accepted, and its control endpoints."""

    def __init__(self, url: str) -> None:
        self.url = url

    def sent(self) -> list[dict[str, Any]]:
        return list(requests.get(f"{self.url}/_control/messages", timeout=5).json()["messages"])

    def calls(self, path: str) -> int:
        seen = requests.get(f"{self.url}/_control/requests", timeout=5).json()["requests"]
        return sum(1 for r in seen if r["path"] == path)

    def inactive(self, *addresses: str) -> None:
        requests.post(f"{self.url}/_control/inactive", json={"addresses": addresses}, timeout=5)

    def faults(self, **fault: int) -> None:
        requests.post(f"{self.url}/_control/faults", json=fault, timeout=5)

    def clear_faults(self) -> None:
        requests.delete(f"{self.url}/_control/faults", timeout=5)


@pytest.fixture
def standin(aws: Stage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Standin]:
    """The stage's sender talks to a Postmark stand-in on loopback."""
    for url in serve_wsgi(postmark.create_app(server_token=POSTMARK_TOKEN, state_dir=tmp_path)):
        monkeypatch.setenv("MAILROOM_POSTMARK_API_URL", url)
        reset_clients()
        yield Standin(url)


@pytest.fixture
def sender(aws: Stage) -> Callable[..., tuple[dict[str, Any], Any, BaseException | None]]:
    """One Lambda invocation of the outbound sender, with Lambda's delete rules."""

    def run() -> Any:
        return aws.run_lambda("outbound-sender", outbound_sender.handle_batch)

    return run


@pytest.fixture
def client(aws: Stage) -> Iterator[Client]:
    with Client(app, stage_name="local") as test_client:
        yield test_client


@pytest.fixture
def submit(client: Client) -> Callable[..., Any]:
    """POST /v1/outbound signed with ``secret`` (the stage's by default) at ``timestamp``."""

    def post(
        body: Request | bytes,
        *,
        secret: str = SIGNING_SECRET,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> Any:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        value = signature if signature is not None else sign(raw, secret, timestamp=timestamp)
        if value:
            headers["X-Mailroom-Signature"] = value
        return client.http.post("/v1/outbound", headers=headers, body=raw)

    return post


@pytest.fixture
def event(client: Client) -> Callable[..., Any]:
    """POST a Postmark event to /webhooks/postmark/events with the stage's credentials."""

    def post(body: dict[str, Any] | bytes, *, password: str = WEBHOOK_PASSWORD) -> Any:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        token = base64.b64encode(f"{WEBHOOK_USER}:{password}".encode()).decode()
        headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
        return client.http.post("/webhooks/postmark/events", headers=headers, body=raw)

    return post


def recorded(name: str, **overrides: Any) -> dict[str, Any]:
    """A recorded Postmark event from ``tests/events/postmark_event_<name>.json``."""
    event = json.loads((EVENTS / f"postmark_event_{name}.json").read_text())
    event.update(overrides)
    return dict(event)


def hard_bounce(address: str, correlation_id: str = "order-0", **extra: Any) -> dict[str, Any]:
    metadata = {"correlation_id": correlation_id}
    return recorded("bounce", Email=address, Metadata=metadata, **extra)


def subscription_change(address: str, *, suppress: bool, **extra: Any) -> dict[str, Any]:
    reason = "ManualSuppression" if suppress else None
    return recorded(
        "subscription_change",
        Recipient=address,
        SuppressSending=suppress,
        SuppressionReason=reason,
        **extra,
    )
