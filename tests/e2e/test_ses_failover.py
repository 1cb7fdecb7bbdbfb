"""Failover and SES feedback end to end on the local stack: every message of a burst is sent
exactly once through one provider while Postmark is down, and SES's simulator feedback lands
in the suppression list and the delivery log."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from chalicelib.mail.delivery_log import DeliveryEvent, DeliveryLog, DeliveryStatus
from chalicelib.mail.failover import ProviderSwitch
from chalicelib.mail.suppression import SuppressionList
from mailroom_cli.main import cli
from mailroom_local.failover_burst import run_burst
from tests.e2e.conftest import aws_client, until

pytestmark = pytest.mark.e2e
Stack = dict[str, Any]
BURST = 20


def _log(stack: Stack) -> DeliveryLog:
    return DeliveryLog(stack["tables"]["state"], client=aws_client(stack, "dynamodb"))


@pytest.mark.parametrize("mode", ["503", "timeout"])
def test_a_burst_while_postmark_is_down_is_sent_exactly_once_through_one_provider(
    stack: Stack, mode: str
) -> None:
    result = run_burst(stack, messages=BURST, mode=mode, timeout_s=240)

    assert result.missing() == []
    assert result.doubled() == []
    assert result.through_both() == []
    assert result.switched_after_s is not None
    assert result.switched_back_after_s is not None
    assert sum(result.ses.values()) > 0
    for correlation_id in result.ids[:BURST]:
        # The sender's line (found_by send or search), and for SES also SES's Send event. A
        # send that timed out after the provider took it is seen there first; the sender's
        # line follows when the retry has proven it, a visibility timeout later.
        [ours] = until(lambda c=correlation_id: _sender_lines(stack, c), seconds=60)
        provider = ours.details["provider"]
        assert (result.postmark if provider == "postmark" else result.ses)[correlation_id] == 1


def _sender_lines(stack: Stack, correlation_id: str) -> list[DeliveryEvent]:
    return [
        e
        for e in _log(stack).history(correlation_id)
        if e.status is DeliveryStatus.SENT and "found_by" in e.details
    ]


def test_ses_simulator_feedback_suppresses_and_explains_a_bounce(stack: Stack) -> None:
    dynamodb = aws_client(stack, "dynamodb")
    switch = ProviderSwitch(stack["tables"]["state"], client=dynamodb)
    switch.force("ses", reason="e2e feedback", actor="test")
    correlation_id = f"e2e-ses-{uuid.uuid4().hex[:8]}"
    try:
        _publish_to(stack, correlation_id, f"bounce+{correlation_id[-8:]}@simulator.amazonses.com")
        bounced = until(
            lambda: [
                e for e in _log(stack).history(correlation_id) if e.status is DeliveryStatus.BOUNCED
            ],
            seconds=60,
        )
    finally:
        switch.force(None, reason="e2e feedback done", actor="test")
    assert bounced[0].details["diagnostic_code"].startswith("smtp; 550 5.1.1")
    suppressions = SuppressionList(stack["tables"]["state"], client=dynamodb)
    address = f"bounce+{correlation_id[-8:]}@simulator.amazonses.com"
    assert suppressions.suppressed([address]) == {address}
    ses_list = requests.get(f"{stack['ses']['url']}/_control/sent", timeout=5).json()
    assert address in ses_list["suppressed"]  # SES's account-level list follows ours
    listed = CliRunner().invoke(
        cli,
        ["--local", "--state-dir", stack["state_dir"], "--json", "trace", address, "--since", "1h"],
        catch_exceptions=False,
    )
    [row] = json.loads(listed.stdout)["emails"]
    assert (row["email"], row["role"]) == (f"outbound:{correlation_id}", "to")
    assert row["last_step"].startswith("bounced at ")


def _publish_to(stack: Stack, correlation_id: str, to: str) -> None:
    aws_client(stack, "sns").publish(
        TopicArn=stack["topics"]["outbound"],
        Message=json.dumps(
            {
                "correlation_id": correlation_id,
                "from": "Shop <shop@example.com>",
                "to": to,
                "subject": "Simulator",
                "text_body": "Bounce me.",
            }
        ),
        MessageGroupId=hashlib.sha256(to.encode()).hexdigest(),
        MessageDeduplicationId=correlation_id,
    )
