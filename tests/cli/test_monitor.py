"""``mailroom dlq monitor``: depth, oldest age and arrivals per interval, for every DLQ."""

from __future__ import annotations

import json

import pytest

from mailroom_cli.context import Context, aws_target
from mailroom_cli.monitor import watch
from tests.cli.conftest import Invoke, dead_letter
from tests.conftest import REGION, STAGE, Stage


def test_monitor_counts_arrivals_between_rounds(
    aws: Stage, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_letter(aws)
    ctx = Context(lambda: aws_target(STAGE, REGION), as_json=True)

    watch(ctx, "inbound", interval=30, count=2, sleep=lambda _: dead_letter(aws))

    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert [(r["depth"], r["arrived"]) for r in first] == [(1, None)]
    assert [(r["depth"], r["arrived"]) for r in second] == [(2, 1)]
    assert second[0]["oldest_s"] is not None


def test_monitor_is_a_dlq_command_with_an_interval(aws: Stage, mailroom: Invoke) -> None:
    result = mailroom("dlq", "monitor", "--count", "1", "--interval", "1")

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].split() == [
        "AT",
        "PIPELINE",
        "DEPTH",
        "OLDEST_S",
        "ARRIVED",
    ]
