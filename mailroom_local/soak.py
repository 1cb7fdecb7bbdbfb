"""The soak: many emails in and requests out through a running local stack while FreeScout and
Postmark flap, then an honest count of what was lost, doubled or dead-lettered without a reason.

FreeScout flaps between 503, answers later than mailroom's HTTP timeout (the work is done,
the answer comes too late) and success; Postmark between 500, late answers and success, with
some recipients inactive (Postmark's 406). Every message carries a unique marker, so only
this run's messages are counted. "Lost" is neither delivered (FreeScout thread, Postmark send,
or suppressed, as the delivery log says) nor in a DLQ once the queues are empty (while they
are not, such a message is "not settled" and the run says so); "doubled" is
more than one FreeScout thread or Postmark send for one message; "reasonless" is a dead letter
without ``mailroom_reason``. ``bench/soak.py`` and ``tests/e2e/test_soak.py`` drive it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from chalicelib.providers.freescout.delivery import unmarked
from mailroom_local.attach import queued, stack_client

SAMPLE = Path(__file__).resolve().parent.parent / "tests" / "events" / "postmark_inbound_basic.json"
# Longer than the stack's MAILROOM_HTTP_TIMEOUT_SECONDS (3 s): the request is served, late.
LATE_MS = 4_000
FREESCOUT_FLAPS = [
    {"status": 503, "count": 3},
    {"count": 12},
    {"delay_ms": LATE_MS, "count": 1},
    {"count": 12},
]
POSTMARK_FLAPS = [
    {"status": 500, "count": 1},
    {"count": 6},
    {"delay_ms": LATE_MS, "count": 1},
    {"count": 6},
]


@dataclass
class Report:
    """What a soak run found; ``ok`` when nothing was lost, doubled or dead-lettered blind."""

    inbound: int
    outbound: int
    delivered: int = 0
    sent: int = 0
    suppressed: int = 0
    dead_lettered: dict[str, int] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    unsettled: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    reasonless: int = 0
    unsettled_in_queues: int = 0
    webhook_retries: int = 0
    seconds: float = 0.0
    posting_seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing lost, doubled or dead-lettered without a reason, and everything settled
        (a run cut off by its deadline proves nothing about what was still queued)."""
        return not (self.lost or self.doubled or self.reasonless or self.unsettled)

    @property
    def throughput(self) -> float:
        settled = self.inbound + self.outbound - len(self.lost)
        return settled / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def lines(self) -> list[str]:
        dead = ", ".join(f"{k}: {v}" for k, v in sorted(self.dead_lettered.items())) or "none"
        return [
            f"sent in {self.inbound} inbound emails, {self.outbound} outbound requests",
            f"delivered {self.delivered} to FreeScout, sent {self.sent} via Postmark, "
            f"suppressed {self.suppressed}; dead-lettered ({dead})",
            f"lost {len(self.lost)}, doubled {len(self.doubled)}, "
            f"reasonless dead letters {self.reasonless} (all must be 0)",
            f"not settled by the deadline, still queued: {len(self.unsettled)} "
            f"({self.unsettled_in_queues} queue messages); webhook retries: {self.webhook_retries}",
            f"throughput {self.throughput:.1f} msgs/s end to end over {self.seconds:.1f} s "
            f"(posting took {self.posting_seconds:.1f} s); "
            f"latency (webhook 200 -> FreeScout, request 202 -> Postmark) "
            f"p50 {self.percentile(0.5):.0f} ms, p95 {self.percentile(0.95):.0f} ms",
        ]


class Soak:
    """One run against the stack described by ``local`` (its ``local.json``)."""

    def __init__(
        self,
        local: dict[str, Any],
        *,
        inbound: int,
        outbound: int,
        mailboxes: int = 40,
        faults: bool = True,
    ):
        self.local = local
        self.faults = faults
        self.inbound, self.outbound, self.mailboxes = inbound, outbound, mailboxes
        self.run_id = uuid.uuid4().hex[:8]
        self.http = requests.Session()
        pool = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=64)
        self.http.mount("http://", pool)
        self.posted: dict[str, float] = {}  # marker -> when the edge accepted it
        self.seen: dict[str, float] = {}  # marker -> when first delivered or sent
        self.settled_at: dict[str, float] = {}  # marker -> when first seen settled, any way
        self.dead: dict[str, dict[str, str]] = {}  # marker -> its dead letter's attributes
        self.suppressed: set[str] = set()
        self.report = Report(inbound=inbound, outbound=outbound)

    # -- driving ---------------------------------------------------------------------------
    def _email(self, n: int) -> tuple[str, dict[str, Any]]:
        marker = f"soak-{self.run_id}-i{n}"
        email = json.loads(SAMPLE.read_text())
        email.update(
            MessageID=marker,
            To=f"desk{n % self.mailboxes}@example.com",
            ToFull=[{"Email": f"desk{n % self.mailboxes}@example.com", "Name": ""}],
            HtmlBody=f"<p>{marker}</p>",
            TextBody=marker,
            Attachments=[],
            Headers=[{"Name": "Message-ID", "Value": f"<{marker}@soak.test>"}],
        )
        return marker, email

    def _post_inbound(self, n: int) -> None:
        marker, email = self._email(n)
        hook = self.local["webhook"]
        for attempt in range(8):  # Postmark retries a non-200 too
            try:
                answer = self.http.post(
                    hook["url"], json=email, auth=(hook["username"], hook["password"]), timeout=30
                )
                if answer.status_code == 200:
                    self.posted[marker] = time.monotonic()
                    return
            except requests.RequestException:
                pass
            self.report.webhook_retries += 1
            time.sleep(0.2 * (attempt + 1))  # backing off like a webhook sender
        self.posted.setdefault(marker, time.monotonic())  # counted; it will show as lost

    def _outbound_request(self, n: int) -> tuple[str, dict[str, Any]]:
        marker = f"soak-{self.run_id}-o{n}"
        to = f"out{n}@example.org"
        if n % 10 == 3:
            to = f"inactive{n}@example.org"  # Postmark answers 406: suppressed, not sent
        elif n % 10 == 7:
            to = f"out{n}@example.org, inactive{n}@example.org"  # sent to the active one
        return marker, {
            "correlation_id": marker,
            "from": "Shop <shop@example.com>",
            "to": to,
            "subject": "Soak",
            "text_body": marker,
        }

    def _post_outbound(self, n: int) -> None:
        from chalicelib.platform.auth import sign

        marker, request = self._outbound_request(n)
        outbound = self.local["outbound"]
        body = json.dumps(request).encode()
        for attempt in range(8):
            headers = {
                "Content-Type": "application/json",
                outbound["signature_header"]: sign(body, outbound["signing_secret"]),
            }
            try:
                answer = self.http.post(outbound["url"], data=body, headers=headers, timeout=30)
                if answer.status_code == 202:
                    self.posted[marker] = time.monotonic()
                    return
            except requests.RequestException:
                pass
            self.report.webhook_retries += 1
            time.sleep(0.2 * (attempt + 1))
        self.posted.setdefault(marker, time.monotonic())

    def _set_faults(self) -> None:
        freescout, postmark = self.local["freescout"]["url"], self.local["postmark"]["url"]
        inactive = [
            address
            for n in range(self.outbound)
            for address in self._outbound_request(n)[1]["to"].split(", ")
            if address.startswith("inactive")
        ]
        self.http.post(f"{postmark}/_control/inactive", json={"addresses": inactive}, timeout=10)
        if not self.faults:
            return
        for url, rules in ((freescout, FREESCOUT_FLAPS), (postmark, POSTMARK_FLAPS)):
            answer = self.http.post(
                f"{url}/_control/faults", json={"rules": rules, "repeat": True}, timeout=10
            )
            answer.raise_for_status()

    def clear_faults(self) -> None:
        for name in ("freescout", "postmark"):
            self.http.delete(f"{self.local[name]['url']}/_control/faults", timeout=10)

    # -- observing ---------------------------------------------------------------------------
    def _aws(self, service: str) -> Any:
        return stack_client(self.local, service)

    def _freescout_counts(self) -> Counter[str]:
        url = self.local["freescout"]["url"]
        held = self.http.get(f"{url}/_control/conversations", timeout=30).json()["conversations"]
        prefix = f"<p>soak-{self.run_id}-i"
        return Counter(
            unmarked(str(t["body"]))[3:-4]
            for c in held
            for t in c["_embedded"]["threads"]
            if str(t.get("body") or "").startswith(prefix)
        )

    def _postmark_counts(self) -> Counter[str]:
        url = self.local["postmark"]["url"]
        sent = self.http.get(f"{url}/_control/messages", timeout=30).json()["messages"]
        prefix = f"soak-{self.run_id}-o"
        return Counter(
            str(m["Metadata"].get("correlation_id"))
            for m in sent
            if str(m["Metadata"].get("correlation_id", "")).startswith(prefix)
        )

    def _in_queues(self, sqs: Any) -> int:
        return queued(self.local, ("inbound-bridge", "outbound-sender"), sqs=sqs)

    def _read_dead_letters(self, sqs: Any) -> None:
        """Add this run's new dead letters (marker -> attributes), leaving them in the DLQ."""
        for name in ("inbound-bridge-dlq", "outbound-sender-dlq"):
            while True:
                # Hidden for a while once read, so the next receive returns the next ones.
                messages = sqs.receive_message(
                    QueueUrl=self.local["queues"][name],
                    MaxNumberOfMessages=10,
                    VisibilityTimeout=600,
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
                if not messages:
                    break
                for message in messages:
                    marker = _marker(message["Body"], self.run_id)
                    if marker is not None:
                        self.dead[marker] = {
                            k: v.get("StringValue", "")
                            for k, v in (message.get("MessageAttributes") or {}).items()
                        }

    def _read_suppressed(self, markers: list[str]) -> None:
        from chalicelib.mail.delivery_log import DeliveryLog, DeliveryStatus

        log = DeliveryLog(self.local["tables"]["state"], client=self._aws("dynamodb"))
        for marker in markers:
            if any(e.status is DeliveryStatus.SUPPRESSED for e in log.history(marker)):
                self.suppressed.add(marker)

    def _observe(self, sqs: Any, *, deep: bool) -> int:
        """Record what has settled; how many posted messages have not. ``deep`` also reads
        the DLQs and the delivery log (slower)."""
        now = time.monotonic()
        threads, sends = self._freescout_counts(), self._postmark_counts()
        for marker in list(threads) + list(sends):
            self.seen.setdefault(marker, now)
        if deep:
            self._read_dead_letters(sqs)
            self._read_suppressed(
                [m for m in self.posted if "-o" in m and m not in self._settled()]
            )
        for marker in self._settled():
            self.settled_at.setdefault(marker, now)
        return len(set(self.posted) - self._settled())

    def _settled(self) -> set[str]:
        return set(self.seen) | set(self.dead) | self.suppressed

    # -- the run -----------------------------------------------------------------------------
    def run(self, *, settle_seconds: float = 300, workers: int = 16) -> Report:
        """Post everything, wait until every message settled (or the deadline), judge."""
        sqs = self._aws("sqs")
        self._set_faults()
        started = time.monotonic()
        try:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                jobs = [pool.submit(self._post_inbound, n) for n in range(self.inbound)]
                jobs += [pool.submit(self._post_outbound, n) for n in range(self.outbound)]
                while not all(j.done() for j in jobs):
                    self._observe(sqs, deep=False)
                    time.sleep(0.25)  # sampling the stand-ins while the posts go out
                for job in jobs:
                    job.result()
            deadline = time.monotonic() + settle_seconds
            quiet_since: float | None = None
            rounds = 0
            while time.monotonic() < deadline:
                rounds += 1
                pending = self._observe(sqs, deep=rounds % 4 == 0)
                if pending == 0 and self._in_queues(sqs) == 0:
                    # A late answer may still land: wait out the longest injected delay.
                    quiet_since = quiet_since or time.monotonic()
                    if time.monotonic() - quiet_since > LATE_MS / 1000 + 1:
                        break
                else:
                    quiet_since = None
                time.sleep(0.25)  # sampling the stand-ins, bounded by the deadline
        finally:
            self.clear_faults()
        self._observe(sqs, deep=True)
        self.report.seconds = max(self.settled_at.values(), default=started) - started
        self.report.posting_seconds = max(self.posted.values(), default=started) - started
        self._judge(sqs)
        return self.report

    def _judge(self, sqs: Any) -> None:
        report = self.report
        threads, sends = self._freescout_counts(), self._postmark_counts()
        report.delivered = len(threads)
        report.sent = len(sends)
        report.suppressed = len(self.suppressed - set(sends))
        report.doubled = sorted(m for m, n in (threads + sends).items() if n > 1)
        report.dead_lettered = dict(
            Counter(
                a.get("mailroom_disposition") or a.get("mailroom_error_class") or "no reason"
                for m, a in self.dead.items()
                if m not in threads and m not in sends
            )
        )
        report.reasonless = sum(1 for a in self.dead.values() if not a.get("mailroom_reason"))
        report.unsettled_in_queues = self._in_queues(sqs)
        missing = sorted(set(self.posted) - self._settled())
        # Only once the queues are empty is a missing message lost; before, it may be queued.
        if report.unsettled_in_queues:
            report.unsettled = missing
        else:
            report.lost = missing
        report.latencies_ms = [
            (self.seen[m] - self.posted[m]) * 1000 for m in self.posted if m in self.seen
        ]


def _marker(body: str, run_id: str) -> str | None:
    """The soak marker a dead letter's body carries (inside JSON, maybe an SNS envelope)."""
    prefix = f"soak-{run_id}-"
    start = body.find(prefix)
    if start < 0:
        return None
    end = start + len(prefix) + 1  # the i or o
    while end < len(body) and body[end].isdigit():
        end += 1
    return body[start:end]
