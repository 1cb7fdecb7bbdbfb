"""The operator's runbook steps on the local stack: ``stop``/``resume`` hold mail in the queue,
``trace`` finds an email from either source by any of its ids, ``probe --json`` answers."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner, Result

from mailroom_cli.main import cli
from tests.e2e.conftest import aws_client, until
from tests.e2e.test_local_stack import SAMPLE

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def _mailroom(stack: dict[str, Any], *args: str) -> Result:
    return CliRunner().invoke(
        cli, ["--local", "--state-dir", stack["state_dir"], "--json", *args], catch_exceptions=False
    )


def _post(stack: dict[str, Any]) -> dict[str, Any]:
    email = json.loads(SAMPLE.read_text())
    email["MessageID"] = f"trace-{uuid.uuid4()}"
    email["OriginalRecipient"] = "trace@mailroom.test"
    email["HtmlBody"] = f"<p>{email['MessageID']}</p>"
    email["Headers"] = [{"Name": "Message-ID", "Value": f"<{email['MessageID']}@Trace.Test>"}]
    hook = stack["webhook"]
    answer = requests.post(
        hook["url"], json=email, auth=(hook["username"], hook["password"]), timeout=10
    )
    assert answer.status_code == 200
    return email


def _depth(stack: dict[str, Any], queue: str) -> int:
    attributes = aws_client(stack).get_queue_attributes(
        QueueUrl=stack["queues"][queue],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


def _conversation_bodies(stack: dict[str, Any]) -> list[str]:
    url = stack["freescout"]["url"]
    found = requests.get(f"{url}/_control/conversations", timeout=10).json()["conversations"]
    return [str(t.get("body")) for c in found for t in c["_embedded"]["threads"]]


def _trace(stack: dict[str, Any], ident: str) -> dict[str, Any]:
    result = _mailroom(stack, "trace", ident)
    return dict(json.loads(result.stdout)) if result.exit_code == 0 else {}


def test_stopped_pipeline_keeps_mail_in_its_queue_until_resumed_then_trace_finds_it(
    stack: dict[str, Any],
) -> None:
    dlq_before = _depth(stack, "inbound-bridge-dlq")
    stopped = _mailroom(stack, "stop", "inbound", "--reason", "rehearsal")
    assert stopped.exit_code == 0, stopped.output
    assert [r["state"] for r in json.loads(stopped.stdout)] == ["Disabled"]
    try:
        email = _post(stack)
        until(lambda: _depth(stack, "inbound-bridge") >= 1, seconds=30)
        health = json.loads(_mailroom(stack, "health").stdout)

        assert not any(email["MessageID"] in b for b in _conversation_bodies(stack))
        assert any(
            c["area"] == "consumer/inbound" and c["detail"].startswith("STOPPED")
            for c in health["checks"]
        )
    finally:
        resumed = _mailroom(stack, "resume", "inbound")
    assert resumed.exit_code == 0, resumed.output
    until(lambda: any(email["MessageID"] in b for b in _conversation_bodies(stack)), seconds=60)
    assert _depth(stack, "inbound-bridge-dlq") == dlq_before

    by_postmark = until(lambda: _trace(stack, email["MessageID"]).get("conversation_id"))
    bare = f"{email['MessageID']}@trace.test"  # no angle brackets, other case, no --recipient
    report = _trace(stack, bare)

    assert report["conversation_id"] == by_postmark
    assert report["answers"]["did we accept it"].startswith("yes (received via postmark")
    assert report["answers"]["did the provider accept it"].startswith("freescout delivered")


def test_ses_mail_without_message_id_or_sender_is_received_and_traced_by_its_ses_id(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    eml = tmp_path / "no-sender.eml"
    eml.write_bytes(b"To: support@mailroom.test\r\nSubject: no sender\r\n\r\nhello\r\n")
    to = "drop-demo@ses.mailroom.test"  # a demo route, seeded at every start
    command = ["receive", str(eml), "--to", to, "--state-dir", stack["state_dir"]]
    done = subprocess.run(
        [sys.executable, "-m", "mailroom_local", *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    ses_id = done.stdout.strip().rsplit(" ", 1)[-1]
    report = until(lambda: _trace(stack, ses_id).get("emails"), seconds=60)
    [email] = report
    assert email["email"] == f"ses:{ses_id}"
    assert [(s["stage"], s["outcome"]) for s in email["story"]] == [
        ("received", "accepted"),
        ("routed", "dropped"),
    ]


def test_probe_json_reports_each_stage_from_the_records(stack: dict[str, Any]) -> None:
    result = _mailroom(stack, "probe", "--timeout", "60")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["status"] == "passed"
    inbound = next(p for p in report["probes"] if p["kind"] == "inbound")
    assert "webhook→bridge" in inbound["detail"]
    assert inbound["latency_ms"] > 0
