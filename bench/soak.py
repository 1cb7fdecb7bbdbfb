"""The soak through the local stack: N emails in and requests out while FreeScout and Postmark
flap (mailroom_local/soak.py says how), then lost, doubled and reasonless dead letters (all
must be 0), throughput and p50/p95 latency.

    .venv/bin/python bench/soak.py [--inbound 500] [--outbound 200] [--pollers 4]
    .venv/bin/python bench/soak.py --state-dir .mailroom   # against a running `make run`

Target: at least 50 msgs/s end to end locally with concurrent pollers. Exit code 1
when anything was lost, doubled or dead-lettered without a reason, or had not settled by the
deadline (``--settle-seconds``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mailroom_local.soak import Soak
from mailroom_local.stack import attached

TARGET_MSGS_PER_SECOND = 50


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/soak.py")
    parser.add_argument("--inbound", type=int, default=500)
    parser.add_argument("--outbound", type=int, default=200)
    parser.add_argument("--pollers", type=int, default=4)
    parser.add_argument("--settle-seconds", type=float, default=900)
    parser.add_argument("--no-faults", action="store_true", help="the same load, no flapping")
    parser.add_argument("--state-dir", type=Path, help="a running stack's (default: start one)")
    args = parser.parse_args()
    with attached(args.state_dir, prefix="mailroom-soak-", pollers=args.pollers) as local:
        pollers = local.get("pump", {}).get("pollers", "?")
        print(
            f"soak: {args.inbound} in, {args.outbound} out, {pollers} pollers per queue; "
            + ("no faults" if args.no_faults else "FreeScout and Postmark flapping"),
            flush=True,
        )
        soak = Soak(local, inbound=args.inbound, outbound=args.outbound, faults=not args.no_faults)
        report = soak.run(settle_seconds=args.settle_seconds)
    for line in report.lines():
        print(line)
    verdict = "met" if report.throughput >= TARGET_MSGS_PER_SECOND else "missed"
    print(f"target >= {TARGET_MSGS_PER_SECOND} msgs/s: {verdict}")
    for name, markers in (
        ("lost", report.lost),
        ("doubled", report.doubled),
        ("not settled", report.unsettled),
    ):
        if markers:
            print(f"{name}: {', '.join(markers[:20])}{' ...' if len(markers) > 20 else ''}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
