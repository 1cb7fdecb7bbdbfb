"""The dead-letter runbook on the local stack with ``mailroom --local``: FreeScout outage →
mail in the DLQ → ``dlq analyze`` → ``dlq redrive`` → every email delivered exactly once,
in its group's order."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import requests
from click.testing import CliRunner, Result

from chalicelib.providers.freescout.delivery import unmarked
from mailroom_cli.main import cli
from tests.e2e.conftest import aws_client, until
from tests.e2e.test_local_stack import SAMPLE

pytestmark = pytest.mark.e2e


def _mailroom(stack: dict[str, Any], *args: str) -> Result:
    return CliRunner().invoke(
        cli, ["--local", "--state-dir", stack["state_dir"], "--json", *args], catch_exceptions=False
    )


def _email(recipient: str, n: int) -> dict[str, Any]:
    email = json.loads(SAMPLE.read_text())
    email["MessageID"] = f"cli-{n}-{uuid.uuid4()}"
    email["OriginalRecipient"] = recipient
    email["HtmlBody"] = f"<p>{email['MessageID']}</p>"
    email["Headers"] = [{"Name": "Message-ID", "Value": f"<{email['MessageID']}@cli.test>"}]
    return email


def _delivered(stack: dict[str, Any]) -> list[str]:
    """Bodies of every FreeScout conversation, in creation order."""
    url = stack["freescout"]["url"]
    found = requests.get(f"{url}/_control/conversations", timeout=10).json()["conversations"]
    return [
        unmarked(c["_embedded"]["threads"][0]["body"]) for c in sorted(found, key=lambda c: c["id"])
    ]


def _dlq_depth(stack: dict[str, Any]) -> int:
    attributes = aws_client(stack).get_queue_attributes(
        QueueUrl=stack["queues"]["inbound-bridge-dlq"],
        AttributeNames=["ApproximateNumberOfMessages"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def test_freescout_outage_is_analysed_and_redriven_exactly_once_in_order(
    stack: dict[str, Any],
) -> None:
    freescout, hook = stack["freescout"]["url"], stack["webhook"]
    start = _dlq_depth(stack)
    emails = [_email("ann@mailroom.test", 1), _email("ann@mailroom.test", 2)]
    emails.append(_email("bob@mailroom.test", 3))
    requests.post(f"{freescout}/_control/faults", json={"status": 503, "count": 10_000}, timeout=10)
    try:
        for email in emails:
            answer = requests.post(
                hook["url"], json=email, auth=(hook["username"], hook["password"]), timeout=10
            )
            assert answer.status_code == 200
        until(lambda: _dlq_depth(stack) >= start + len(emails), seconds=150)
    finally:
        requests.delete(f"{freescout}/_control/faults", timeout=10)

    analysis = _mailroom(stack, "dlq", "analyze", "inbound")

    assert analysis.exit_code == 0, analysis.output
    rows = json.loads(analysis.stdout)
    ours = {e["MessageID"] for e in emails}
    assert sum(r["count"] for r in rows) >= len(emails)
    assert {r["action"] for r in rows} == {"redrive"}  # retries exhausted, cause healed

    peeked = json.loads(_mailroom(stack, "dlq", "peek", "inbound", "-n", "50").stdout)
    ids = [p["message_id"] for p in peeked if p["business_id"].split(":", 1)[1] in ours]
    assert len(ids) == len(emails)
    redrive = _mailroom(
        stack, "dlq", "redrive", "inbound", "--rate", "20", *[a for i in ids for a in ("--id", i)]
    )

    assert redrive.exit_code == 0, redrive.output
    assert json.loads(redrive.stdout)[0]["moved"] == len(emails)
    bodies = [e["HtmlBody"] for e in emails]
    until(lambda: set(bodies) <= set(_delivered(stack)), seconds=60)
    delivered = [b for b in _delivered(stack) if b in bodies]
    assert sorted(delivered) == sorted(bodies)  # each exactly once
    ann = [b for b in delivered if b in bodies[:2]]
    # ann's group in its original order (the embedded AWS's backstop reverses it in the DLQ).
    assert ann == bodies[:2]
    audit = json.loads(_mailroom(stack, "audit", "list").stdout)
    assert audit[0]["action"] == "dlq.redrive"
    assert audit[0]["actor"].startswith("local:")


def test_health_on_the_local_stack_checks_subscriptions_and_parameters(
    stack: dict[str, Any],
) -> None:
    result = _mailroom(stack, "health")

    report = json.loads(result.stdout)
    levels = {c["area"]: c["level"] for c in report["checks"]}
    assert levels["subscription/inbound"] == "HEALTHY"
    assert levels["subscription/outbound"] == "HEALTHY"
    assert levels["ssm"] == "HEALTHY"
    assert levels["consumer/inbound"] == "HEALTHY"  # the pump
    assert result.exit_code == (0 if report["status"] == "HEALTHY" else 1)
