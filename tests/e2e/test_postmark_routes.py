"""End to end: Postmark inbound mail whose route is Gmail or a bounce goes from the bridge to
the Gmail forwarder or the bouncer (claim-checked when large), as SES mail does."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from mailroom_local.demo import SES_DOMAIN, _seed_ses_routes
from tests.e2e.conftest import until

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "tests" / "events" / "postmark_inbound_basic.json"
SENDER = "ada.customer@example.org"

pytestmark = pytest.mark.e2e


def _email(to: str, *, attachment_bytes: int = 0) -> dict[str, Any]:
    email = json.loads(SAMPLE.read_text())
    message_id = f"e2e-{uuid.uuid4()}"
    email.update(
        MessageID=message_id,
        To=to,
        ToFull=[{"Email": to, "Name": "", "MailboxHash": ""}],
        OriginalRecipient=to,
        Subject=f"Postmark route {message_id}",
        Headers=[
            {"Name": "Message-ID", "Value": f"<{message_id}@e2e.test>"},
            {"Name": "Return-Path", "Value": f"<{SENDER}>"},
            {
                "Name": "Received-SPF",
                "Value": f"Pass (mailroom.test: domain of {SENDER}) envelope-from={SENDER}",
            },
        ],
    )
    if attachment_bytes:
        content = base64.b64encode(b"%PDF" + b"x" * attachment_bytes).decode()
        email["Attachments"] = [
            {
                "Name": "large.pdf",
                "Content": content,
                "ContentType": "application/pdf",
                "ContentLength": attachment_bytes + 4,
                "ContentID": "",
            }
        ]
    return email


def _post(stack: dict[str, Any], email: dict[str, Any]) -> None:
    hook = stack["webhook"]
    answer = requests.post(
        hook["url"], json=email, auth=(hook["username"], hook["password"]), timeout=10
    )
    assert answer.status_code == 200, answer.text


def _gmail_count(stack: dict[str, Any]) -> int:
    url = f"{stack['gmail']['url']}/_control/mailboxes"
    return int(requests.get(url, timeout=10).json().get(stack["gmail"]["mailbox"], 0))


@pytest.mark.parametrize("attachment_bytes", [0, 300_000], ids=["inline", "claim-checked"])
def test_postmark_mail_for_a_gmail_route_lands_in_the_gmail_stand_in(
    stack: dict[str, Any], attachment_bytes: int
) -> None:
    _seed_ses_routes(stack)
    before = _gmail_count(stack)

    _post(stack, _email(f"gmail-demo@{SES_DOMAIN}", attachment_bytes=attachment_bytes))

    until(lambda: _gmail_count(stack) > before)


def test_postmark_mail_for_a_bounce_route_is_bounced_through_the_outbound_path(
    stack: dict[str, Any],
) -> None:
    _seed_ses_routes(stack)
    url = f"{stack['postmark']['url']}/_control/messages"
    email = _email(f"bounce-demo@{SES_DOMAIN}")

    _post(stack, email)

    def dsn() -> list[dict[str, Any]]:
        sent = requests.get(url, timeout=10).json()["messages"]
        return [m for m in sent if SENDER in json.dumps(m) and email["MessageID"] in json.dumps(m)]

    until(dsn)
