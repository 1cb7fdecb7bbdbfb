"""Local stack figures: start-up time to local.json, and inbound latency through the stack.

Start-up is measured from process start to ``local.json`` written (dependencies installed).
Latency is the time from the webhook's 200 to the conversation being visible in the
FreeScout stand-in, for 20 emails sent one after another; the median is printed.
Targets: start-up under 30 s.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mailroom_local.stack import spawn

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "events" / "postmark_inbound_basic.json"
EMAILS = 20


def main() -> None:
    state = Path(tempfile.mkdtemp(prefix="mailroom-bench-"))
    started = time.perf_counter()
    stack = spawn(state)
    try:
        local_json = state / "local.json"
        while not local_json.exists():
            if stack.poll() is not None or time.perf_counter() - started > 120:
                raise SystemExit("the local stack did not start")
            time.sleep(0.05)
        startup = time.perf_counter() - started
        local = json.loads(local_json.read_text())
        hook, freescout = local["webhook"], local["freescout"]["url"]
        latencies = []
        for _ in range(EMAILS):
            email = json.loads(SAMPLE.read_text())
            email["MessageID"] = str(uuid.uuid4())
            email["HtmlBody"] = f"<p>{email['MessageID']}</p>"
            answer = requests.post(
                hook["url"], json=email, auth=(hook["username"], hook["password"]), timeout=10
            )
            answered = time.perf_counter()
            assert answer.status_code == 200, answer.text
            while True:
                held = requests.get(f"{freescout}/_control/conversations", timeout=10).json()
                bodies = {
                    t["body"] for c in held["conversations"] for t in c["_embedded"]["threads"]
                }
                if email["HtmlBody"] in bodies:
                    latencies.append((time.perf_counter() - answered) * 1000)
                    break
                if time.perf_counter() - answered > 30:
                    raise SystemExit("an email did not arrive within 30 s")
                time.sleep(0.01)
    finally:
        stack.terminate()
        stack.wait(timeout=30)
    verdict = "met" if startup < 30 else "missed"
    print(f"start to local.json written: {startup:.1f} s (target < 30 s: {verdict})")
    print(
        f"webhook 200 -> conversation visible, {EMAILS} emails: median "
        f"{statistics.median(latencies):.0f} ms, max {max(latencies):.0f} ms"
    )


if __name__ == "__main__":
    main()
