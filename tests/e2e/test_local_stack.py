"""End to end through the local stack: HTTP in, the real handlers, the FreeScout stand-in out."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from chalicelib.providers.freescout.delivery import unmarked
from tests.e2e.conftest import aws_client, until

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "tests" / "events" / "postmark_inbound_basic.json"

pytestmark = pytest.mark.e2e


def _email(**overrides: Any) -> dict[str, Any]:
    email = json.loads(SAMPLE.read_text())
    email["MessageID"] = f"e2e-{uuid.uuid4()}"
    email["HtmlBody"] = f"<p>{email['MessageID']}</p>"
    email["Headers"] = [{"Name": "Message-ID", "Value": f"<{email['MessageID']}@e2e.test>"}]
    email.update(overrides)
    return email


def _post(stack: dict[str, Any], email: dict[str, Any]) -> requests.Response:
    hook = stack["webhook"]
    return requests.post(
        hook["url"], json=email, auth=(hook["username"], hook["password"]), timeout=10
    )


def _conversations_with(stack: dict[str, Any], body: str) -> list[dict[str, Any]]:
    url = stack["freescout"]["url"]
    found = requests.get(f"{url}/_control/conversations", timeout=10).json()["conversations"]
    return [c for c in found if any(unmarked(t["body"]) == body for t in c["_embedded"]["threads"])]


def test_posted_email_becomes_a_conversation(stack: dict[str, Any]) -> None:
    email = _email()

    assert _post(stack, email).status_code == 200

    [conversation] = until(lambda: _conversations_with(stack, email["HtmlBody"]))
    assert conversation["mailboxId"] == 1
    assert (
        conversation["_embedded"]["threads"][0]["_embedded"]["attachments"][0]["fileName"]
        == "invoice.pdf"
    )


def test_freescout_failing_three_times_then_healing_yields_one_conversation(
    stack: dict[str, Any],
) -> None:
    freescout = stack["freescout"]["url"]
    requests.post(f"{freescout}/_control/faults", json={"status": 503, "count": 3}, timeout=10)
    email = _email()

    assert _post(stack, email).status_code == 200

    until(lambda: _conversations_with(stack, email["HtmlBody"]), seconds=60)
    faults = requests.post(f"{freescout}/_control/faults", json={"count": 0}, timeout=10).json()
    assert faults["count"] == 0
    assert len(_conversations_with(stack, email["HtmlBody"])) == 1


def test_poison_message_reaches_the_dlq_with_its_reason(stack: dict[str, Any]) -> None:
    sqs = aws_client(stack)
    sqs.send_message(
        QueueUrl=stack["queues"]["inbound-bridge"],
        MessageBody=json.dumps({"not": "a postmark payload"}),
        MessageGroupId="poison",
        MessageDeduplicationId=str(uuid.uuid4()),
    )

    def dead() -> list[dict[str, Any]]:
        return list(
            sqs.receive_message(
                QueueUrl=stack["queues"]["inbound-bridge-dlq"],
                MessageAttributeNames=["All"],
                WaitTimeSeconds=1,
            ).get("Messages", [])
        )

    [message] = until(dead)
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert attributes["mailroom_disposition"] == "poison"
    assert attributes["mailroom_error_class"] in {"PoisonMessageError", "PayloadRejected"}
    assert attributes["mailroom_reason"]


def test_a_second_start_says_it_is_already_running(stack: dict[str, Any]) -> None:
    second = subprocess.run(
        [sys.executable, "-m", "mailroom_local", "run", "--state-dir", stack["state_dir"]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert second.returncode == 1
    assert second.stdout.strip().startswith("mailroom local stack is already running")
