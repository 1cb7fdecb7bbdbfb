"""A Gmail label that is gone from the mailbox, through the local stack as an operator meets
it: the forwarder dead-letters the mail naming the label (after asking the route again, with
its own permissions), the operator creates the label, fixes the route and redrives, and the
mail is imported once."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from chalicelib.mail.routing import DynamoRouteStore, RouteAction, RouteRule
from mailroom_local import iam
from mailroom_local.attach import stack_client
from mailroom_local.authorize import authorize
from mailroom_local.demo import SES_DOMAIN
from tests.e2e.conftest import until
from tests.e2e.test_cli_redrive import _mailroom
from tests.e2e.test_ses_stack import _receive

pytestmark = pytest.mark.e2e


def _imported(stack: dict[str, Any], mailbox: str) -> int:
    counts = requests.get(f"{stack['gmail']['url']}/_control/mailboxes", timeout=10).json()
    return int(counts.get(mailbox, 0))


def test_a_label_gone_from_the_mailbox_is_dead_lettered_then_fixed_redriven_and_imported_once(
    stack: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    tag = uuid.uuid4().hex[:8]
    mailbox, recipient = f"relabel-{tag}@gmail.local", f"relabel-{tag}@{SES_DOMAIN}"
    state = Path(stack["state_dir"])
    assert authorize(state, mailbox) == 0
    # Written as `routes add` would have when the label still existed: the CLI now refuses it.
    routes = DynamoRouteStore(
        stack["tables"]["routes"], cache_seconds=0, client=stack_client(stack, "dynamodb")
    )
    routes.put_rule(
        RouteRule(
            pattern=recipient,
            action=RouteAction.GMAIL,
            target=f"{mailbox};labels=INBOX,Label_404",
            description="e2e: a label deleted in Gmail",
        )
    )
    # The router sees the new route only once its cache has ended.
    time.sleep(int(stack["env"]["MAILROOM_ROUTES_CACHE_SECONDS"]))

    stamp = _receive(stack, recipient)

    def dead_letter() -> list[dict[str, Any]]:
        peeked = _mailroom(stack, "dlq", "peek", "gmail", "--body", "-n", "50")
        return [p for p in json.loads(peeked.stdout) if stamp in json.dumps(p)]

    [dead] = until(dead_letter, seconds=60)
    assert "no label Label_404" in json.dumps(dead)
    assert _imported(stack, mailbox) == 0

    capsys.readouterr()
    assert authorize(state, mailbox, ["Support"]) == 0
    [label] = [
        line.split()[1] for line in capsys.readouterr().out.splitlines() if line.startswith("label")
    ]
    fixed = f"{mailbox};labels=INBOX,{label}"
    changed = _mailroom(stack, "routes", "set", recipient, "--target", fixed, "--reason", "e2e")
    assert changed.exit_code == 0, changed.output
    redriven = _mailroom(
        stack, "dlq", "redrive", "gmail", "--id", str(dead["message_id"]), "--reason", "e2e"
    )
    assert redriven.exit_code == 0, redriven.output

    until(lambda: _imported(stack, mailbox) == 1, seconds=60)
    assert dead_letter() == []
    # The route was asked again by the forwarder itself: a call the permission test judges.
    scans = [
        call
        for call in iam.read_calls(Path(stack["calls_file"]))
        if (call["function"], call["action"]) == ("gmail_forwarder", "dynamodb:Scan")
    ]
    assert scans
    assert {call["resource"].rsplit("/", 1)[1] for call in scans} == {stack["tables"]["routes"]}
    removed = _mailroom(stack, "routes", "remove", recipient, "--reason", "e2e")
    assert removed.exit_code == 0, removed.output
