"""A failover burst against a running local stack: Postmark goes down (503s, or answers lost
after it accepted), a burst of outbound mail goes out, Postmark comes back.

Returns what each provider sent per correlation id, so a caller can assert "exactly once,
never through both", and how long the switch took to open and to close. Used by
``bench/failover.py`` and the end-to-end failover test.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests

from chalicelib.mail.failover import ProviderSwitch
from mailroom_local.attach import stack_client

# Postmark's send paths only: its search keeps answering, as it does in a real outage.
FAULTS = {
    "503": {"status": 503, "path": "/email"},
    "timeout": {"delay_ms": 4_000, "path": "/email"},  # past the stack's 3 s HTTP timeout
}


@dataclass
class BurstResult:
    """Per correlation id, the sends each provider took; and the switch's timings."""

    postmark: Counter[str] = field(default_factory=Counter)
    ses: Counter[str] = field(default_factory=Counter)
    ids: list[str] = field(default_factory=list)
    switched_after_s: float | None = None
    switched_back_after_s: float | None = None

    def doubled(self) -> list[str]:
        """Ids sent more than once in all (through one provider twice, or through both)."""
        return [i for i in self.ids if self.postmark[i] + self.ses[i] > 1]

    def missing(self) -> list[str]:
        return [i for i in self.ids if self.postmark[i] + self.ses[i] == 0]

    def through_both(self) -> list[str]:
        return [i for i in self.ids if self.postmark[i] and self.ses[i]]


def _publish(local: dict[str, Any], ids: list[str]) -> None:
    sns = stack_client(local, "sns")
    for start in range(0, len(ids), 10):
        entries = []
        for number, correlation_id in enumerate(ids[start : start + 10]):
            to = f"burst-{correlation_id[-6:]}@example.org"
            request = {
                "correlation_id": correlation_id,
                "from": "Shop <shop@example.com>",
                "to": to,
                "subject": "Failover burst",
                "text_body": "One of a burst.",
            }
            entries.append(
                {
                    "Id": str(number),
                    "Message": json.dumps(request),
                    "MessageGroupId": hashlib.sha256(to.encode()).hexdigest(),
                    "MessageDeduplicationId": correlation_id,
                }
            )
        sns.publish_batch(TopicArn=local["topics"]["outbound"], PublishBatchRequestEntries=entries)


def _count(local: dict[str, Any], result: BurstResult) -> None:
    ours = set(result.ids)
    postmark = requests.get(f"{local['postmark']['url']}/_control/messages", timeout=10).json()
    result.postmark = Counter(
        m["Metadata"].get("correlation_id")
        for m in postmark["messages"]
        if m.get("Metadata", {}).get("correlation_id") in ours
    )
    ses = requests.get(f"{local['ses']['url']}/_control/sent", timeout=10).json()
    result.ses = Counter(
        m["tags"]["correlation_id"][0]
        for m in ses["messages"]
        if m["tags"].get("correlation_id", [""])[0] in ours
    )


def run_burst(
    local: dict[str, Any], *, messages: int, mode: str, timeout_s: float = 300
) -> BurstResult:
    """Fault Postmark, send ``messages``, wait until each went out, heal Postmark and send a
    trickle until the switch is back on Postmark (the probe runs with the sender's batches)."""
    postmark = local["postmark"]["url"]
    switch = ProviderSwitch(local["tables"]["state"], client=stack_client(local, "dynamodb"))
    switch.force(None, reason="failover burst starts", actor="bench")
    result = BurstResult(ids=[f"burst-{mode}-{uuid.uuid4().hex[:12]}" for _ in range(messages)])
    requests.post(f"{postmark}/_control/faults", json={"rules": [FAULTS[mode]]}, timeout=10)
    started = time.monotonic()
    deadline = started + timeout_s
    try:
        _publish(local, result.ids)
        while time.monotonic() < deadline:
            if result.switched_after_s is None and switch.read().down == "postmark":
                result.switched_after_s = time.monotonic() - started
            _count(local, result)
            if not result.missing() and result.switched_after_s is not None:
                break
            time.sleep(0.5)
    finally:
        requests.delete(f"{postmark}/_control/faults", timeout=10)
    healed = time.monotonic()
    trickle = 0
    while time.monotonic() < deadline and result.switched_after_s is not None:
        if switch.read().down is None:
            result.switched_back_after_s = time.monotonic() - healed
            break
        trickle += 1
        extra = f"burst-{mode}-trickle-{uuid.uuid4().hex[:8]}"
        result.ids.append(extra)
        _publish(local, [extra])
        time.sleep(1.0)
    # Everything sent, trickle included, before counting for the last time.
    while time.monotonic() < deadline:
        _count(local, result)
        if not result.missing():
            break
        time.sleep(0.5)
    return result
