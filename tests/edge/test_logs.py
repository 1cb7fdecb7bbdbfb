"""Every answered request writes one JSON line: status, a constant reason, a measured duration;
a crash is logged at ERROR with its class (and is the only way to a 500)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from chalicelib.platform.aws import aws_client, reset_clients
from chalicelib.platform.logging import LOGGER_NAME, JsonFormatter
from tests.conftest import REGION, STAGE, Stage
from tests.edge.conftest import ENDPOINTS, Post, valid_body


@pytest.fixture
def lines() -> Iterator[Any]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.DEBUG)

    def answered() -> list[dict[str, Any]]:
        """The lines that answer a request, read once."""
        found = [json.loads(line) for line in stream.getvalue().splitlines()]
        stream.seek(0)
        stream.truncate()
        return [line for line in found if "status_code" in line]

    yield answered
    logger.removeHandler(handler)
    logger.setLevel(previous)


def _body(path: str) -> bytes:
    return json.dumps(valid_body(path)).encode()


@pytest.mark.parametrize(
    ("path", "status", "reason", "outcome"),
    [
        (ENDPOINTS[0], 200, "accepted", "accepted"),
        (ENDPOINTS[1], 200, "stored", "stored"),
        (ENDPOINTS[2], 202, "queued", "queued"),
    ],
)
def test_an_accepted_request_logs_one_line_with_status_reason_and_duration(
    aws: Stage, post: Post, lines: Any, path: str, status: int, reason: str, outcome: str
) -> None:
    response = post(path, _body(path))

    [line] = lines()
    assert response.status_code == status
    assert (line["status_code"], line["reason"], line["outcome"]) == (status, reason, outcome)
    assert line["level"] == "INFO"
    assert line["duration_ms"] > 0
    assert "message_id_hash" in line or "correlation_id" in line


@pytest.mark.parametrize("path", ENDPOINTS)
def test_refusals_log_one_line_each_with_their_reason(
    aws: Stage, post: Post, client: Any, lines: Any, path: str
) -> None:
    bad_json = post(path, b"{")
    wrong_auth = client.http.post(path, headers={"Authorization": "Basic eDp5"}, body=_body(path))

    answered = lines()
    assert (bad_json.status_code, wrong_auth.status_code) == (400, 401)
    assert [(a["status_code"], a["outcome"]) for a in answered] == [
        (400, "refused"),
        (401, "refused"),
    ]
    assert answered[0]["reason"] == "invalid_json"
    expected = "missing signature header" if path == "/v1/outbound" else "unauthorized"
    assert answered[1]["reason"] == expected
    assert all(a["duration_ms"] > 0 for a in answered)


def test_an_oversized_body_logs_413(
    aws: Stage, post: Post, lines: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILROOM_MAX_WEBHOOK_BYTES", "2048")
    reset_clients()

    response = post(ENDPOINTS[0], b" " * 4096)

    [line] = lines()
    assert (response.status_code, line["status_code"], line["reason"]) == (
        413,
        413,
        "payload_too_large",
    )


def test_an_outage_logs_503_with_its_reason_and_error_class(
    aws: Stage, post: Post, lines: Any
) -> None:
    boto3.client("ssm", region_name=REGION).delete_parameter(
        Name=f"/mailroom/{STAGE}/postmark/webhook-basic-auth"
    )

    response = post(ENDPOINTS[0], _body(ENDPOINTS[0]))

    [line] = lines()
    assert response.status_code == 503
    assert (line["status_code"], line["reason"], line["level"]) == (
        503,
        "secrets_unavailable",
        "WARNING",
    )
    assert line["error_class"]


def test_a_bug_answers_500_and_logs_at_error_with_its_class(
    aws: Stage, post: Post, lines: Any
) -> None:
    def bug(**_: Any) -> None:
        raise ZeroDivisionError

    aws_client("dynamodb").meta.events.register("before-call.dynamodb.GetItem", bug)

    response = post(ENDPOINTS[1], _body(ENDPOINTS[1]))

    [line] = lines()
    assert (response.status_code, json.loads(response.body)["error"]) == (500, "internal_error")
    assert (line["level"], line["outcome"], line["error_class"]) == (
        "ERROR",
        "crashed",
        "ZeroDivisionError",
    )


def test_a_missing_setting_answers_503_and_logs_the_variable_name(
    aws: Stage, post: Post, lines: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MAILROOM_INBOUND_TOPIC_ARN")
    reset_clients()

    response = post(ENDPOINTS[0], _body(ENDPOINTS[0]))

    [line] = lines()
    assert response.status_code == 503
    assert line["reason"] == "configuration error: MAILROOM_INBOUND_TOPIC_ARN"
    assert line["error_class"] == "ConfigurationError"
