"""Failover bench: a burst of outbound mail while Postmark is down, on a fresh local stack.

For each fault (503s; answers lost after Postmark accepted), sends ``--messages`` (200 by
default), then heals Postmark and prints how long the switch took to open and to close, how
many messages each provider sent, and how many went out twice or through both (target 0).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mailroom_local.failover_burst import FAULTS, run_burst
from mailroom_local.stack import spawn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--mode", choices=[*FAULTS, "all"], default="all")
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="mailroom-failover-"))
    stack = spawn(state)
    failed = False
    try:
        local_json = state / "local.json"
        started = time.monotonic()
        while not local_json.exists():
            if stack.poll() is not None or time.monotonic() - started > 120:
                raise SystemExit("the local stack did not start")
            time.sleep(0.1)
        local = json.loads(local_json.read_text())
        for mode in FAULTS if args.mode == "all" else [args.mode]:
            began = time.monotonic()
            result = run_burst(local, messages=args.messages, mode=mode, timeout_s=900)
            took = time.monotonic() - began
            wrong = len(result.doubled()) + len(result.through_both()) + len(result.missing())
            failed = failed or wrong > 0
            switched = result.switched_after_s
            back = result.switched_back_after_s
            print(
                f"{mode:>7}: {args.messages} messages (+{len(result.ids) - args.messages} "
                f"after healing) in {took:.1f} s; postmark {sum(result.postmark.values())}, "
                f"ses {sum(result.ses.values())}; twice {len(result.doubled())}, "
                f"through both {len(result.through_both())}, missing {len(result.missing())}; "
                f"switch opened after {_s(switched)}, back on Postmark {_s(back)} after healing"
            )
    finally:
        stack.terminate()
        stack.wait(timeout=30)
    if failed:
        raise SystemExit("some message was not sent exactly once")


def _s(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f} s"


if __name__ == "__main__":
    main()
