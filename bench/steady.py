"""Steady state: a constant mixed load through the local stack, with every stack process's
memory and the throughput of each 1,000 messages, so growth over a working day shows.

    .venv/bin/python bench/steady.py [--messages 10000] [--warm-up 1000] [--in-flight 200]
    .venv/bin/python bench/steady.py --state-dir .mailroom   # against a running `make run`

Half the messages come in through the Postmark webhook, a fifth as SES receives (raw MIME in
S3, the notification on the SES topic), the rest go out through ``/v1/outbound``; FreeScout
and Postmark fail one call in ten (503). The load is closed: at most ``--in-flight`` messages
posted and not yet delivered. ``--warm-up`` messages go before the measured ones, because a
closed load's backlog starts empty and gathers in the slowest flow (the inbound one, whose
FIFO groups each fault holds for a visibility timeout): until it has, the faster flows
settle more than their share and the pace is not yet the steady one. ``--in-flight`` more
follow the measured messages, so the last block too is measured under the same load, not
while the queues drain. Each line names the open messages by flow. Targets: the
stack's resident memory under 1 GB at the end, the last 1,000 messages' throughput within
10 % of the first 1,000's, 0 lost, 0 doubled.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from census import census  # noqa: E402

from mailroom_local.attach import queued  # noqa: E402
from mailroom_local.receive import notification, parse_verdicts  # noqa: E402
from mailroom_local.stack import attached  # noqa: E402

SAMPLE = ROOT / "tests" / "events" / "postmark_inbound_basic.json"
MEMORY_TARGET_MB = 1024
THROUGHPUT_TOLERANCE = 0.10
ONE_FAULT_IN_TEN = [{"status": 503, "count": 1}, {"count": 9}]


def stack_processes(pid: int) -> dict[int, str]:
    """The stack's process and its descendants (from /proc), each with a short name."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = {pid}, {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return {p: _name(p) for p in sorted(found)}


def _name(pid: int) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "?"
    if "moto_process" in command:
        return "embedded AWS (moto)"
    if "mailroom_local.api" in command:
        return "API (chalice local)"
    if "mailroom_local" in command:
        return "stack: pump + stand-ins"
    return command[:40]


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Steady:
    """One run against the stack described by ``local`` (its ``local.json``)."""

    def __init__(
        self,
        local: dict[str, Any],
        *,
        messages: int,
        in_flight: int,
        block: int = 1000,
        warm_up: int = 0,
    ) -> None:
        import boto3

        self.local = local
        self.messages, self.in_flight, self.block = messages, in_flight, block
        self.warm_up = warm_up
        self.run_id = secrets.token_hex(4)
        self.pattern = re.compile(rf"steady-{self.run_id}-[ios]\d+")
        self.http = requests.Session()
        self.http.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=32))
        aws = {
            "endpoint_url": local["aws_endpoint_url"],
            "region_name": local["region"],
            "aws_access_key_id": "local",
            "aws_secret_access_key": "local",
        }
        self.s3, self.sns, self.sqs = (boto3.client(s, **aws) for s in ("s3", "sns", "sqs"))
        self.lock = threading.Lock()
        self.posted: dict[str, float] = {}
        self.settled: dict[str, float] = {}
        self.effects: dict[str, set[str]] = defaultdict(set)  # marker -> thread / send ids
        self.dead: set[str] = set()
        self.failed_posts = 0
        self.conversation_since = 0
        self.send_since = 0

    # -- the load ----------------------------------------------------------------------------
    def post(self, n: int) -> None:
        kind = n % 10
        if kind < 5:
            marker, send = f"steady-{self.run_id}-i{n}", self._inbound
        elif kind < 7:
            marker, send = f"steady-{self.run_id}-s{n}", self._ses
        else:
            marker, send = f"steady-{self.run_id}-o{n}", self._outbound
        for attempt in range(8):  # as Postmark and a product app retry
            try:
                if send(n, marker):
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2 * (attempt + 1))
        else:
            self.failed_posts += 1
        with self.lock:
            self.posted[marker] = time.monotonic()

    def _inbound(self, n: int, marker: str) -> bool:
        email = json.loads(SAMPLE.read_text())
        to = f"desk{n % 40}@example.com"
        email.update(
            MessageID=marker,
            To=to,
            ToFull=[{"Email": to, "Name": ""}],
            HtmlBody=f"<p>{marker}</p>",
            TextBody=marker,
            Attachments=[],
            Headers=[{"Name": "Message-ID", "Value": f"<{marker}@steady.test>"}],
        )
        hook = self.local["webhook"]
        answer = self.http.post(
            hook["url"], json=email, auth=(hook["username"], hook["password"]), timeout=30
        )
        return answer.status_code == 200

    def _ses(self, n: int, marker: str) -> bool:
        raw = (
            f"From: sender{n % 7}@example.net\r\nTo: desk{n % 40}@example.com\r\n"
            f"Subject: steady {marker}\r\nMessage-ID: <{marker}@ses.steady.test>\r\n"
            f"Date: {datetime.now(UTC).strftime('%a, %d %b %Y %H:%M:%S +0000')}\r\n"
            f"Content-Type: text/plain\r\n\r\n{marker}\r\n"
        ).encode()
        ses_id = secrets.token_hex(20)
        key = f"raw/{ses_id}"
        self.s3.put_object(Bucket=self.local["bucket"], Key=key, Body=raw)
        self.http.post(
            f"{self.local['ses']['url']}/_control/received",
            json={"message_id": ses_id, "received_at": datetime.now(UTC).isoformat()},
            timeout=10,
        )
        note = notification(
            raw,
            bucket=self.local["bucket"],
            key=key,
            recipients=[f"desk{n % 40}@example.com"],
            verdicts=parse_verdicts(""),
        )
        self.sns.publish(TopicArn=self.local["topics"]["ses-inbound"], Message=json.dumps(note))
        return True

    def _outbound(self, n: int, marker: str) -> bool:
        from chalicelib.platform.auth import sign

        outbound = self.local["outbound"]
        body = json.dumps(
            {
                "correlation_id": marker,
                "from": "Shop <shop@example.com>",
                "to": f"out{n}@example.org",
                "subject": "Steady",
                "text_body": marker,
            }
        ).encode()
        headers = {
            "Content-Type": "application/json",
            outbound["signature_header"]: sign(body, outbound["signing_secret"]),
        }
        answer = self.http.post(outbound["url"], data=body, headers=headers, timeout=30)
        return answer.status_code == 202

    def set_faults(self, rules: list[dict[str, Any]] | None) -> None:
        for name in ("freescout", "postmark"):
            url = f"{self.local[name]['url']}/_control/faults"
            if rules is None:
                self.http.delete(url, timeout=10)
            else:
                self.http.post(url, json={"rules": rules, "repeat": True}, timeout=10)

    # -- watching ----------------------------------------------------------------------------
    def observe(self) -> None:
        """Read what the stand-ins received since the last look (they keep a bounded window)."""
        now = time.monotonic()
        freescout = self.local["freescout"]["url"]
        held = self.http.get(
            f"{freescout}/_control/conversations",
            params={"since": self.conversation_since},
            timeout=30,
        ).json()["conversations"]
        for conversation in held:
            self.conversation_since = max(self.conversation_since, int(conversation["id"]))
            for thread in conversation["_embedded"]["threads"]:
                for marker in set(self.pattern.findall(str(thread.get("body") or ""))):
                    self._effect(marker, f"thread-{thread['id']}", now)
        postmark = self.local["postmark"]["url"]
        sent = self.http.get(
            f"{postmark}/_control/messages", params={"since": self.send_since}, timeout=30
        ).json()["messages"]
        for message in sent:
            self.send_since = max(self.send_since, int(message["Seq"]))
            marker = str((message.get("Metadata") or {}).get("correlation_id", ""))
            if self.pattern.fullmatch(marker):
                self._effect(marker, f"send-{message['MessageID']}", now)

    def _effect(self, marker: str, effect: str, now: float) -> None:
        with self.lock:
            self.effects[marker].add(effect)
            self.settled.setdefault(marker, now)

    def dead_letters(self) -> None:
        for name, url in self.local["queues"].items():
            if not name.endswith("-dlq"):
                continue
            while True:
                found = self.sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600
                ).get("Messages", [])
                if not found:
                    break
                for message in found:
                    self.dead.update(self.pattern.findall(message["Body"]))

    def open(self) -> str:
        """The messages posted and not yet delivered, by flow: where the backlog stands."""
        kinds = {"i": "inbound", "s": "SES", "o": "outbound"}
        with self.lock:
            waiting = [m.rsplit("-", 1)[1][0] for m in self.posted if m not in self.settled]
        return "open " + ", ".join(f"{kinds[k]} {waiting.count(k)}" for k in kinds)

    def queued(self) -> int:
        return queued(self.local, sqs=self.sqs)

    # -- the run -----------------------------------------------------------------------------
    def run(self, *, settle_seconds: float) -> int:
        processes = stack_processes(int(self.local["pid"]))
        print(_memory_line("start", processes), flush=True)
        self.set_faults(ONE_FAULT_IN_TEN)
        started = time.monotonic()
        marks = [started]
        rates: list[float] = []
        # The load stays constant from the first measured message to the last: ``warm_up``
        # messages go first, while the backlog builds up in the slowest flow, and
        # ``in_flight`` more follow the measured ones, so the last block is not the drain. All
        # of them count for lost and doubled.
        edges = [self.warm_up] * (self.warm_up > 0) + [
            self.warm_up + self.block * k for k in range(1, self.messages // self.block + 1)
        ]
        next_post = 0
        total = self.warm_up + self.messages + self.in_flight
        try:
            with ThreadPoolExecutor(max_workers=8) as pool:
                pending: list[Any] = []
                while len(self.settled) < total:
                    with self.lock:
                        open_count = len(self.posted) - len(self.settled)
                    pending = [f for f in pending if not f.done()]
                    while next_post < total and open_count + len(pending) < self.in_flight:
                        pending.append(pool.submit(self.post, next_post))
                        next_post += 1
                    time.sleep(0.5)  # sampling the stand-ins at a steady pace
                    self.observe()
                    while len(marks) <= len(edges) and len(self.settled) >= edges[len(marks) - 1]:
                        previous = edges[len(marks) - 2] if len(marks) > 1 else 0
                        edge = edges[len(marks) - 1]
                        marks.append(sorted(self.settled.values())[edge - 1])
                        rate = (edge - previous) / (marks[-1] - marks[-2])
                        if edge > self.warm_up:
                            rates.append(rate)
                            label = f"{edge - self.warm_up:>6} settled"
                        else:
                            label = f"warm-up {edge}"
                        processes = stack_processes(int(self.local["pid"]))
                        label = f"{label}: {rate:5.1f} msgs/s;"
                        print(f"{_memory_line(label, processes)}; {self.open()}", flush=True)
                    if next_post >= total and not pending:
                        if time.monotonic() - max(self.posted.values()) > settle_seconds:
                            break
                        if self.queued() == 0:
                            self.dead_letters()
                            if len(self.settled | dict.fromkeys(self.dead)) >= total:
                                break
        finally:
            self.set_faults(None)
        self.observe()
        self.dead_letters()
        return self._judge(started, rates)

    def _judge(self, started: float, rates: list[float]) -> int:
        lost = sorted(set(self.posted) - set(self.settled) - self.dead)
        doubled = sorted(m for m, effects in self.effects.items() if len(effects) > 1)
        dead = sorted(self.dead - set(self.settled))
        seconds = max(self.settled.values(), default=started) - started
        processes = stack_processes(int(self.local["pid"]))
        total = sum(rss_mb(p) for p in processes)
        print(_memory_line("end", processes), flush=True)
        print(
            f"{len(self.posted)} messages ({self.failed_posts} refused at the edge): "
            f"{len(self.settled)} delivered or sent in {seconds:.0f} s "
            f"({len(self.settled) / seconds if seconds else 0:.1f} msgs/s), "
            f"dead-lettered {len(dead)}, lost {len(lost)}, doubled {len(doubled)}"
        )
        ok = not lost and not doubled and not self.failed_posts
        memory_ok = total < MEMORY_TARGET_MB
        print(
            f"stack memory at the end {total:.0f} MB (target < {MEMORY_TARGET_MB} MB): "
            + ("met" if memory_ok else "missed")
        )
        if len(rates) >= 2:
            ratio = rates[-1] / rates[0]
            steady = ratio >= 1 - THROUGHPUT_TOLERANCE
            print(
                f"throughput first {self.block} {rates[0]:.1f} msgs/s, "
                f"last {self.block} {rates[-1]:.1f} msgs/s ({ratio:.2f}x; target within 10 %): "
                + ("met" if steady else "missed")
            )
            ok = ok and steady
        for name, markers in (("lost", lost), ("doubled", doubled)):
            if markers:
                print(f"{name}: {', '.join(markers[:20])}{' ...' if len(markers) > 20 else ''}")
        return 0 if ok and memory_ok else 1


def _memory_line(label: str, processes: dict[int, str]) -> str:
    sizes = {pid: rss_mb(pid) for pid in processes}
    parts = ", ".join(f"{name} {sizes[pid]:.0f}" for pid, name in processes.items())
    return f"{label} memory MB: {parts}; total {sum(sizes.values()):.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/steady.py")
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--block", type=int, default=1000, help="messages per throughput line")
    parser.add_argument(
        "--warm-up",
        type=int,
        default=1000,
        help="messages first, not in the throughput figures, while the backlog builds",
    )
    parser.add_argument("--in-flight", type=int, default=200, help="posted, not yet delivered")
    parser.add_argument("--pollers", type=int, default=4)
    parser.add_argument("--settle-seconds", type=float, default=300)
    parser.add_argument("--state-dir", type=Path, help="a running stack's (default: start one)")
    args = parser.parse_args()
    with attached(args.state_dir, prefix="mailroom-steady-", pollers=args.pollers) as local:
        print(
            f"steady: {args.warm_up} warm-up and {args.messages} measured messages (5/10 "
            f"Postmark inbound, 2/10 SES, 3/10 outbound), FreeScout and Postmark failing 1 call "
            f"in 10, at most {args.in_flight} in flight, {local['pump']['pollers']} pollers per "
            "queue",
            flush=True,
        )
        steady = Steady(
            local,
            messages=args.messages,
            in_flight=args.in_flight,
            block=args.block,
            warm_up=args.warm_up,
        )
        code = steady.run(settle_seconds=args.settle_seconds)
        print("what the embedded AWS holds at the end (bench/census.py):", flush=True)
        print("\n".join(census(local)), flush=True)
        return code


if __name__ == "__main__":
    sys.exit(main())
