"""``make demo``'s sending half: one of each SES simulator outcome through SES, with its
feedback in the delivery log, then a Postmark outage and the failover to SES and back."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any

from chalicelib.mail.delivery_log import DeliveryLog
from chalicelib.mail.failover import ProviderSwitch
from mailroom_local.attach import stack_client
from mailroom_local.failover_burst import run_burst

SIMULATOR = ("success", "bounce", "ooto", "complaint", "suppressionlist")
# What each simulator address should end with in the delivery log.
EXPECTED = {
    "success": "delivered",
    "bounce": "bounced",
    "ooto": "delivered",
    "complaint": "complained",
    "suppressionlist": "bounced",
}


def _publish(local: dict[str, Any], correlation_id: str, to: str) -> None:
    request = {
        "correlation_id": correlation_id,
        "from": "Shop <shop@example.com>",
        "to": to,
        "subject": "mailroom demo through SES",
        "text_body": "Hello from the demo.",
    }
    stack_client(local, "sns").publish(
        TopicArn=local["topics"]["outbound"],
        Message=json.dumps(request),
        MessageGroupId=hashlib.sha256(to.encode()).hexdigest(),
        MessageDeduplicationId=correlation_id,
    )


def feedback(local: dict[str, Any]) -> int:
    """Send one message per simulator address through SES; print what SES said back."""
    dynamodb = stack_client(local, "dynamodb")
    switch = ProviderSwitch(local["tables"]["state"], client=dynamodb)
    log = DeliveryLog(local["tables"]["state"], client=dynamodb)
    switch.force("ses", reason="make demo: SES feedback", actor="demo")
    stamp = uuid.uuid4().hex[:6]
    ids = {name: f"demo-ses-{name}-{stamp}" for name in SIMULATOR}
    try:
        for name, correlation_id in ids.items():
            _publish(local, correlation_id, f"{name}+{stamp}@simulator.amazonses.com")
        deadline = time.monotonic() + 60
        seen: dict[str, list[str]] = {}
        while time.monotonic() < deadline:
            seen = {n: [e.status.value for e in log.history(c)] for n, c in ids.items()}
            if all(EXPECTED[n] in seen[n] for n in ids):
                break
            time.sleep(0.5)  # polling a running stack, bounded by the deadline
    finally:
        switch.force(None, reason="make demo: SES feedback done", actor="demo")
    missing = 0
    for name, correlation_id in ids.items():
        events = log.history(correlation_id)
        last = events[-1] if events else None
        evidence = ""
        if last is not None:
            details = last.details
            evidence = details.get("smtp_response") or details.get("diagnostic_code") or ""
            evidence = (
                evidence or details.get("bounce_subtype") or details.get("complaint_type", "")
            )
        statuses = " -> ".join(e.status.value for e in events) or "nothing yet"
        missing += EXPECTED[name] not in statuses
        print(f"{name + '@':<16} {statuses} {evidence}".rstrip(), flush=True)
        print(f"{'':<16} mailroom --local trace {correlation_id}", flush=True)
    return 1 if missing else 0


def failover(local: dict[str, Any]) -> int:
    """Postmark answers 503 to every send; a burst goes out through SES; Postmark heals."""
    result = run_burst(local, messages=10, mode="503", timeout_s=120)
    print(
        f"{'failover':<16} 10 messages while Postmark answered 503: postmark "
        f"{sum(result.postmark.values())}, ses {sum(result.ses.values())}, twice "
        f"{len(result.doubled())}, through both {len(result.through_both())}; switched after "
        f"{result.switched_after_s or 0:.1f} s, back on Postmark "
        f"{result.switched_back_after_s or 0:.1f} s after it healed",
        flush=True,
    )
    wrong = result.doubled() or result.through_both() or result.missing()
    return 1 if wrong or result.switched_back_after_s is None else 0
