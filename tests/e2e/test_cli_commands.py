"""The operator's commands on the local stack with ``mailroom --local``, signed as the stack's
operator user: each works within the documented operator policy (its calls are judged by
``test_permissions``)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from mailroom_local.authorize import authorize
from tests.e2e.conftest import aws_client, until
from tests.e2e.test_cli_redrive import _mailroom

pytestmark = pytest.mark.e2e


def _poison_in_the_bouncer_dlq(stack: dict[str, Any]) -> str:
    """Send a malformed bounce request; the dead letter's SQS message id."""
    marker = uuid.uuid4().hex
    aws_client(stack).send_message(
        QueueUrl=stack["queues"]["bouncer"], MessageBody=json.dumps({"not": marker})
    )

    def dead() -> list[str]:
        peeked = json.loads(_mailroom(stack, "dlq", "peek", "bouncer", "--body", "-n", "50").stdout)
        return [p["message_id"] for p in peeked if marker in json.dumps(p)]

    [message_id] = until(dead)
    return str(message_id)


def test_routes_and_suppression_commands_work_with_the_operator_policy(
    stack: dict[str, Any],
) -> None:
    pattern = f"ops-{uuid.uuid4().hex[:8]}@mailroom.test"
    address = f"suppressed-{uuid.uuid4().hex[:8]}@example.org"
    steps = [
        ("routes", "add", pattern, "--action", "drop", "--reason", "e2e"),
        ("routes", "test", pattern),
        ("routes", "list"),
        ("routes", "disable", pattern, "--reason", "e2e"),
        ("routes", "enable", pattern, "--reason", "e2e"),
        ("routes", "remove", pattern, "--reason", "e2e"),
        ("suppression", "add", address, "--reason", "e2e"),
        ("suppression", "list"),
        ("suppression", "remove", address, "--reason", "e2e"),
        ("dlq", "status"),
        ("audit", "list"),
    ]
    for step in steps:
        result = _mailroom(stack, *step)
        assert result.exit_code == 0, (step, result.output)
    assert _mailroom(stack, "suppression", "check", address).exit_code == 0
    traced = _mailroom(stack, "trace", address)
    assert traced.exit_code in {0, 1}, traced.output  # found, or nothing known; 2 is refused


def test_dead_letters_are_discarded_and_quarantined_with_the_operator_policy(
    stack: dict[str, Any],
) -> None:
    for command in ("discard", "quarantine"):
        message_id = _poison_in_the_bouncer_dlq(stack)

        result = _mailroom(stack, "dlq", command, "--id", message_id, "--reason", "e2e")

        assert result.exit_code == 0, result.output


def test_a_gmail_routes_labels_are_checked_against_the_local_mailbox(
    stack: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    mailbox = f"labels-{uuid.uuid4().hex[:8]}@gmail.local"
    pattern = f"to-{mailbox.replace('@gmail.local', '@mailroom.test')}"
    assert authorize(Path(stack["state_dir"]), mailbox, ["Projects"]) == 0
    [label] = [
        line.split()[1] for line in capsys.readouterr().out.splitlines() if line.startswith("label")
    ]

    unknown = f"{mailbox};labels=INBOX,Label_99"
    refused = _mailroom(stack, "routes", "add", pattern, "--action", "gmail", "--target", unknown)
    known = f"{mailbox};labels=INBOX,{label}"
    added = _mailroom(stack, "routes", "add", pattern, "--action", "gmail", "--target", known)

    assert refused.exit_code == 2, refused.output
    assert json.loads(refused.stdout)["label_check"]["unknown"] == ["Label_99"]
    assert added.exit_code == 0, added.output
    check = json.loads(added.stdout)["label_check"]
    assert (check["checked"], check["unknown"]) == (True, [])
    assert {"id": label, "name": "Projects"} in check["mailbox_labels"]
    removed = _mailroom(stack, "routes", "remove", pattern, "--reason", "e2e")
    assert removed.exit_code == 0, removed.output


def test_the_installed_console_script_works_from_outside_the_checkout(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    """As an operator runs it: `mailroom` on PATH, in a directory of their own (the local
    target's IAM emulation reads the deployed policies, so they are part of the package)."""
    script = Path(sys.executable).with_name("mailroom")
    done = subprocess.run(
        [str(script), "--local", "--state-dir", stack["state_dir"], "--json", "routes", "list"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert isinstance(json.loads(done.stdout), list)
