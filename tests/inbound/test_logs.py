"""Logs of a full scenario carry outcomes as JSON and no address, subject or body."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import responses

from chalicelib.platform.logging import LOGGER_NAME, JsonFormatter
from tests.conftest import Stage
from tests.inbound.conftest import CONVERSATIONS, basic, created


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield stream
    logger.removeHandler(handler)


def test_full_scenario_logs_outcomes_without_personal_data(
    aws: Stage,
    post: Any,
    payload: Any,
    bridge: Any,
    freescout: responses.RequestsMock,
    captured: io.StringIO,
    caplog: pytest.LogCaptureFixture,
) -> None:
    aws.put_route("*", "freescout", "5")
    freescout.add(responses.POST, CONVERSATIONS, status=503)
    freescout.add(**created(42))
    post(payload())
    post(payload(MessageID="bad-creds"), headers=basic(password="nope"))
    post(b"{not json")
    bridge()
    aws.make_visible("inbound-bridge")
    bridge()

    text = captured.getvalue() + caplog.text
    for secret in (
        "ada.customer@example.org",
        "support@mailroom.test",
        "bob.cc@example.org",
        "Invoice 4711",
        "secret invoice",
        "Ada Customer",
        "73e6d360-66eb-11e1-8e72-a8904824019b",
    ):
        assert secret not in text
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    outcomes = [line for line in lines if line["message"] == "message outcome"]
    bridge_outcomes = [o["outcome"] for o in outcomes if o["event_type"] == "inbound_bridge"]
    assert bridge_outcomes == ["retry", "success"]
    success = outcomes[-1]
    assert success["mailbox_id"] == "5"
    assert len(success["message_id_hash"]) == 16
    assert {"timestamp_utc", "duration_ms"} <= success.keys()
    assert outcomes[-2]["error_class"] == "ProviderTransientError"
