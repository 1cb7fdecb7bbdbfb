"""Observability fixtures: captured log lines, the stand-ins on loopback, the probe's settings."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import responses

from chalicelib.handlers import inbound_bridge, outbound_sender, webhooks
from chalicelib.platform.aws import reset_clients
from chalicelib.platform.logging import LOGGER_NAME, JsonFormatter
from chalicelib.platform.settings import Settings, get_settings
from mailroom_local import freescout, postmark
from tests.conftest import POSTMARK_TOKEN, Stage, serve_wsgi

WEBHOOK_URL = "https://api.mailroom.test/api/webhooks/postmark/inbound"
PROBE_ADDRESS = "probe@mailroom.test"


class Lines:
    """The JSON lines the mailroom logger wrote."""

    def __init__(self, stream: io.StringIO) -> None:
        self._stream = stream

    def all(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self._stream.getvalue().splitlines()]

    def messages(self, message: str) -> list[dict[str, Any]]:
        return [line for line in self.all() if line["message"] == message]


@pytest.fixture
def lines() -> Iterator[Lines]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield Lines(stream)
    logger.removeHandler(handler)


@pytest.fixture
def freescout_url(aws: Stage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The FreeScout stand-in on loopback, the bridge pointed at it, a route to mailbox 1."""
    app = freescout.create_app(api_key="freescout-key", state_dir=tmp_path)
    for url in serve_wsgi(app):
        monkeypatch.setenv("MAILROOM_FREESCOUT_URL", url)
        reset_clients()
        aws.put_route("*", "freescout", "1")
        yield url


@pytest.fixture
def postmark_url(aws: Stage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    app = postmark.create_app(server_token=POSTMARK_TOKEN, state_dir=tmp_path)
    for url in serve_wsgi(app):
        monkeypatch.setenv("MAILROOM_POSTMARK_API_URL", url)
        reset_clients()
        yield url


@pytest.fixture
def probe_settings(aws: Stage, monkeypatch: pytest.MonkeyPatch) -> Callable[[], Settings]:
    """The stage's settings with the probe configured (read after the other fixtures)."""
    for name, value in {
        "MAILROOM_PROBE_ENABLED": "true",
        "MAILROOM_PROBE_ADDRESS": PROBE_ADDRESS,
        "MAILROOM_PROBE_FROM": "probe-sender@mailroom.test",
        "MAILROOM_PROBE_WEBHOOK_URL": WEBHOOK_URL,
    }.items():
        monkeypatch.setenv(name, value)

    def current() -> Settings:
        reset_clients()
        return get_settings()

    return current


@pytest.fixture
def public_webhook(aws: Stage) -> Iterator[responses.RequestsMock]:
    """The public webhook URL answered by the real webhook handler (loopback passes through);
    started after moto, whose own request mock would otherwise answer first."""

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        body = request.body if isinstance(request.body, bytes) else request.body.encode()
        reply = webhooks.postmark_inbound(dict(request.headers), body)
        return reply.status, {}, json.dumps(reply.body)

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru("http://127.0.0.1")
        mock.add_callback(responses.POST, WEBHOOK_URL, callback=answer)
        yield mock


@pytest.fixture
def pipelines(aws: Stage) -> Callable[[], None]:
    """One Lambda invocation of the bridge and of the sender."""

    def run() -> None:
        aws.run_lambda("inbound-bridge", inbound_bridge.handle_batch)
        aws.run_lambda("outbound-sender", outbound_sender.handle_batch)

    return run
