"""Active tracing: every deployed function traced, its segments allowed, and the trace id in
each log line, so ``mailroom trace`` can link an email's invocations to X-Ray."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from chalicelib.platform.logging import JsonFormatter
from infra import policies
from mailroom_cli.context import Context, Target
from mailroom_cli.trace import trace_links

ROOT = Path(__file__).resolve().parents[2]
HEADER = "Root=1-5e1b4151-5ac6c58f5b1e6a2f3c0d4e5f;Parent=53995c3f42cd8ad8;Sampled=1"


def _line(message: str) -> dict[str, object]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tracing-test")
    logger.addHandler(handler)
    try:
        logger.warning(message, extra={"fields": {"event_type": "test"}})
    finally:
        logger.removeHandler(handler)
    return dict(json.loads(stream.getvalue()))


def test_each_log_line_carries_the_invocations_trace_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_X_AMZN_TRACE_ID", HEADER)
    traced = _line("traced")
    monkeypatch.delenv("_X_AMZN_TRACE_ID")
    untraced = _line("untraced")

    assert traced["trace_id"] == "1-5e1b4151-5ac6c58f5b1e6a2f3c0d4e5f"
    assert "trace_id" not in untraced


def test_every_deployed_stage_traces_and_every_function_may_send_segments() -> None:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())

    for stage in policies.STAGES:
        assert config["stages"][stage].get("xray") is True, stage
        for function in policies.FUNCTIONS:
            actions = {
                a for s in policies.policy(stage, function)["Statement"] for a in s["Action"]
            }
            assert "xray:PutTraceSegments" in actions, (stage, function)


def test_trace_links_each_invocation_once() -> None:
    ctx = Context(lambda: Target(stage="prod", region="eu-west-1"))
    lines = [{"trace_id": "1-a"}, {"trace_id": "1-a"}, {"trace_id": "1-b"}, {}]

    assert trace_links(ctx, lines) == [
        "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#xray:traces/1-a",
        "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#xray:traces/1-b",
    ]
