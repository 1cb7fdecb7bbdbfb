"""``python -m mailroom_local demo|send``: post sample emails to a running stack (inbound, and
a signed outbound request), say where each went; ``send`` returns once the request is settled
(sent, suppressed or dead-lettered) and says which."""

from __future__ import annotations

import base64
import copy
import json
import time
from pathlib import Path
from typing import Any

import requests

from chalicelib.platform.auth import sign
from chalicelib.providers.freescout.delivery import unmarked
from mailroom_local.attach import stack_client

EVENTS = Path(__file__).resolve().parent.parent / "tests" / "events"
SAMPLE = EVENTS / "postmark_inbound_basic.json"
OUTBOUND_SAMPLE = EVENTS / "outbound_basic.json"


def _samples() -> list[tuple[str, dict[str, Any]]]:
    base = json.loads(SAMPLE.read_text())
    stamp = str(int(time.time()))
    first = copy.deepcopy(base)
    first["MessageID"] = f"demo-{stamp}-1"
    first["Headers"] = [{"Name": "Message-ID", "Value": f"<demo-{stamp}-1@example.org>"}]
    reply = copy.deepcopy(base)
    reply.update(MessageID=f"demo-{stamp}-2", Subject="Re: " + base["Subject"], Attachments=[])
    reply["Headers"] = [
        {"Name": "Message-ID", "Value": f"<demo-{stamp}-2@example.org>"},
        {"Name": "In-Reply-To", "Value": f"<demo-{stamp}-1@example.org>"},
    ]
    plain = copy.deepcopy(base)
    plain.update(MessageID=f"demo-{stamp}-3", Subject="A question", Attachments=[])
    plain["Headers"] = [{"Name": "Message-ID", "Value": f"<demo-{stamp}-3@example.org>"}]
    samples = [("with attachment", first), ("reply to it", reply), ("plain", plain)]
    for label, email in samples:
        email["HtmlBody"] = f"<p>demo {stamp}: {label}</p>"
    return samples


def _local(state_dir: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads((state_dir / "local.json").read_text()))
    except FileNotFoundError:
        print(f"no local stack found ({state_dir}/local.json); start it with `make run`")
        return None


def send(state_dir: Path, request_file: Path = OUTBOUND_SAMPLE) -> int:
    """Sign ``request_file`` with the local secret, POST it to /v1/outbound, follow it."""
    local = _local(state_dir)
    if local is None:
        return 1
    try:
        request = json.loads(request_file.read_text())
    except (OSError, ValueError) as err:
        print(f"cannot read an outbound request from {request_file}: {err}")
        return 1
    if request_file.resolve() == OUTBOUND_SAMPLE:  # a fresh id, so the sample can go again
        request["correlation_id"] = f"demo-{time.time_ns()}"
    body = json.dumps(request).encode()
    outbound = local["outbound"]
    answer = requests.post(
        outbound["url"],
        data=body,
        headers={
            "Content-Type": "application/json",
            outbound["signature_header"]: sign(body, outbound["signing_secret"]),
        },
        timeout=10,
    )
    print(f"POST /v1/outbound answered {answer.status_code}: {answer.text}", flush=True)
    if answer.status_code != 202:
        return 1
    correlation_id = str(request.get("correlation_id"))
    outcome, detail = wait_until_settled(local, correlation_id)
    print(f"-> {outcome}: {detail}", flush=True)
    return 0 if outcome in ("sent", "suppressed") else 1


def wait_until_settled(
    local: dict[str, Any], correlation_id: str, *, seconds: float = 60
) -> tuple[str, str]:
    """``(outcome, detail)`` as soon as the request is sent, suppressed or dead-lettered.

    The delivery log says which (the sender records each); a dead letter the batch runner
    moved without a log entry is found by peeking the DLQ (visibility 0, so it stays there).
    """
    from chalicelib.mail.delivery_log import DeliveryLog, DeliveryStatus

    log = DeliveryLog(local["tables"]["state"], client=stack_client(local, "dynamodb"))
    sqs = stack_client(local, "sqs")
    terminal = {
        DeliveryStatus.SENT: "sent",
        DeliveryStatus.SUPPRESSED: "suppressed",
        DeliveryStatus.DEAD_LETTERED: "dead-lettered",
    }
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for event in log.history(correlation_id):
            if event.status in terminal:
                details = event.details
                detail = (
                    details.get("postmark_message_id")
                    or details.get("reason")
                    or details.get("recipients")
                    or event.status.value
                )
                return terminal[event.status], detail
        dead = sqs.receive_message(
            QueueUrl=local["queues"]["outbound-sender-dlq"],
            MaxNumberOfMessages=10,
            VisibilityTimeout=0,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        for message in dead:
            if correlation_id in message["Body"]:
                reason = message.get("MessageAttributes", {}).get("mailroom_reason", {})
                return "dead-lettered", reason.get("StringValue", "no reason recorded")
        time.sleep(0.2)  # polling a running stack, bounded by the deadline
    return "not settled", f"nothing within {seconds:.0f} s (see queues in local.json)"


def run(state_dir: Path) -> int:
    local = _local(state_dir)
    if local is None:
        return 1
    hook = local["webhook"]
    auth = base64.b64encode(f"{hook['username']}:{hook['password']}".encode()).decode()
    freescout = local["freescout"]
    for label, email in _samples():
        answer = requests.post(
            hook["url"],
            json=email,
            headers={"Authorization": f"Basic {auth}"},
            timeout=10,
        )
        print(f"{label:<16} webhook answered {answer.status_code}", flush=True)
        deadline = time.monotonic() + 30
        where = "not delivered yet (see the DLQ: queues.inbound-bridge-dlq in local.json)"
        while time.monotonic() < deadline:
            found = requests.get(f"{freescout['url']}/_control/conversations", timeout=10).json()[
                "conversations"
            ]
            for conversation in found:
                bodies = [unmarked(t["body"]) for t in conversation["_embedded"]["threads"]]
                if any(email["HtmlBody"] == body for body in bodies) and (
                    len(bodies) > 1 or label != "reply to it"
                ):
                    where = f"FreeScout conversation {conversation['id']} ({len(bodies)} thread(s))"
                    break
            else:
                time.sleep(0.5)  # polling a running stack, bounded by the deadline
                continue
            break
        print(f"{'':<16} -> {where}", flush=True)
    print("outbound", flush=True)
    sent = send(state_dir)
    print("received by SES", flush=True)
    received = receive_each_action(state_dir, local)
    from mailroom_local import demo_ses

    print("sent through SES (simulator addresses)", flush=True)
    through_ses = demo_ses.feedback(local)
    print("Postmark down", flush=True)
    return received or sent or through_ses or demo_ses.failover(local)


SES_DOMAIN = "ses.mailroom.test"
SES_ROUTES = {
    f"gmail-demo@{SES_DOMAIN}": ("gmail", "demo@gmail.local"),
    f"bounce-demo@{SES_DOMAIN}": ("bounce", ""),
    f"drop-demo@{SES_DOMAIN}": ("drop", ""),
    # support@ falls through to the default route: FreeScout mailbox 1
}


def _seed_ses_routes(local: dict[str, Any]) -> None:
    seed_routes(stack_client(local, "dynamodb"), local["tables"]["routes"])


def seed_routes(dynamodb: Any, table: str) -> None:
    """The demo's SES routes (``gmail-demo@``, ``bounce-demo@``, ``drop-demo@``): the stack
    seeds them at every start, so the README's examples route as described."""
    for pattern, (action, target) in SES_ROUTES.items():
        dynamodb.put_item(
            TableName=table,
            Item={
                "PK": {"S": f"ROUTE#{pattern}"},
                "SK": {"S": "RULE#v1"},
                "action": {"S": action},
                "target": {"S": target},
                "enabled": {"BOOL": True},
                "description": {"S": f"demo: SES mail to {action}"},
            },
        )


def _ses_email(to: str, stamp: str) -> bytes:
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"] = "Ada Customer <ada.customer@example.org>"
    message["To"] = to
    message["Subject"] = f"SES demo {stamp} for {to.split('@')[0]}"
    message["Message-ID"] = f"<ses-demo-{stamp}-{to.split('@')[0]}@example.org>"
    message["Date"] = "Sun, 22 Nov 2026 10:00:00 +0000"
    message.set_content(f"SES demo {stamp}")
    return bytes(message.as_bytes())


def receive_each_action(state_dir: Path, local: dict[str, Any]) -> int:
    """Receive one SES email per action and say where each went."""
    from mailroom_local.receive import receive

    _seed_ses_routes(local)
    stamp = str(time.time_ns())
    checks = {
        "gmail": lambda: (
            requests.get(f"{local['gmail']['url']}/_control/mailboxes", timeout=10)
            .json()
            .get(local["gmail"]["mailbox"])
        ),
        "bounce": lambda: requests.get(
            f"{local['ses']['url']}/_control/bounces", timeout=10
        ).json()["bounces"],
        "freescout": lambda: [
            c
            for c in requests.get(
                f"{local['freescout']['url']}/_control/conversations", timeout=10
            ).json()["conversations"]
            if stamp in json.dumps(c)
        ],
    }
    failed = 0
    for action, to in (
        ("gmail", f"gmail-demo@{SES_DOMAIN}"),
        ("bounce", f"bounce-demo@{SES_DOMAIN}"),
        ("drop", f"drop-demo@{SES_DOMAIN}"),
        ("freescout", f"support@{SES_DOMAIN}"),
    ):
        eml = state_dir / f"ses-demo-{action}.eml"
        eml.write_bytes(_ses_email(to, stamp))
        receive(state_dir, eml, to=to)
        check = checks.get(action)
        if check is None:
            print(f"{action:<16} -> dropped on purpose (see the audit log)", flush=True)
            continue
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not check():
            time.sleep(0.5)  # polling a running stack, bounded by the deadline
        found = bool(check())
        failed += not found
        print(f"{action:<16} -> {'delivered' if found else 'not yet (see the DLQs)'}", flush=True)
    return 1 if failed else 0
