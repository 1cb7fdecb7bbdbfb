"""End to end through the local stack: SES receipt → router → each action: the Gmail stand-in,
the SES stand-in (bounce), the bridge and FreeScout, or a drop with its audit record."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from chalicelib.platform.logging import hash_id
from mailroom_local.demo import SES_DOMAIN, _seed_ses_routes, _ses_email
from mailroom_local.receive import receive
from tests.e2e.conftest import aws_client, until

pytestmark = pytest.mark.e2e


def _receive(stack: dict[str, Any], to: str, verdicts: str = "") -> str:
    stamp = uuid.uuid4().hex
    state = Path(stack["state_dir"])
    eml = state / f"{stamp}.eml"
    eml.write_bytes(_ses_email(to, stamp))
    assert receive(state, eml, to=to, verdicts=verdicts) == 0
    return stamp


def _bounces(stack: dict[str, Any]) -> list[dict[str, Any]]:
    return list(
        requests.get(f"{stack['ses']['url']}/_control/bounces", timeout=10).json()["bounces"]
    )


def test_ses_mail_for_a_gmail_route_lands_in_the_gmail_stand_in(stack: dict[str, Any]) -> None:
    _seed_ses_routes(stack)
    url = f"{stack['gmail']['url']}/_control/mailboxes"
    before = requests.get(url, timeout=10).json().get(stack["gmail"]["mailbox"], 0)

    _receive(stack, f"gmail-demo@{SES_DOMAIN}")

    until(lambda: requests.get(url, timeout=10).json().get(stack["gmail"]["mailbox"], 0) > before)


def test_ses_mail_for_a_bounce_route_is_bounced_once_unless_the_sender_is_forged(
    stack: dict[str, Any],
) -> None:
    _seed_ses_routes(stack)
    before = len(_bounces(stack))

    _receive(stack, f"bounce-demo@{SES_DOMAIN}", verdicts="spf=FAIL,dkim=missing")
    _receive(stack, f"bounce-demo@{SES_DOMAIN}")

    until(lambda: len(_bounces(stack)) > before)
    [bounce] = _bounces(stack)[before:]
    assert bounce["Recipients"][0]["RecipientDsnFields.Status"] == "5.1.1"


def test_ses_mail_for_the_freescout_route_becomes_a_conversation(stack: dict[str, Any]) -> None:
    url = f"{stack['freescout']['url']}/_control/conversations"

    stamp = _receive(stack, f"support@{SES_DOMAIN}")  # the default route: FreeScout mailbox 1

    def conversation() -> list[dict[str, Any]]:
        found = requests.get(url, timeout=10).json()["conversations"]
        return [c for c in found if stamp in str(c.get("subject", ""))]

    [found] = until(conversation)
    assert found["mailboxId"] == 1


def test_ses_mail_for_a_drop_route_is_dropped_with_an_audit_record(stack: dict[str, Any]) -> None:
    _seed_ses_routes(stack)
    dynamodb = aws_client(stack, "dynamodb")
    recipient = f"drop-demo@{SES_DOMAIN}"

    def drops() -> int:
        today = datetime.now(UTC).strftime("%Y-%m-%d")
        items = dynamodb.query(
            TableName=stack["tables"]["state"],
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": f"AUDIT#{today}"}},
        )["Items"]
        return sum(
            item.get("action", {}).get("S") == "drop" and hash_id(recipient) in json.dumps(item)
            for item in items
        )

    before = drops()

    _receive(stack, recipient)

    until(lambda: drops() > before)
