"""A crash at every side-effect boundary: every pipeline, before and after every outbound call.

The harness of ``tests/crash`` (moto in-process, the stand-ins on loopback): a discovery run
records the AWS and HTTP calls one message makes in the stage under test; then, per call, one
run crashes before it and one after it, and redelivery, lock takeover and the callers' retries
run to quiescence. Prints per pipeline the boundaries found, the crashes, and the runs that
ended lost, doubled or with a dead letter without its reason (each such run is listed).
``make test`` runs the short version (the distinct crash points of the core pipelines).

    .venv/bin/python bench/crash_boundaries.py [--pipeline NAME ...] [--messages N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.crash.harness import crash_everywhere, world  # noqa: E402
from tests.crash.pipelines import ALL_PIPELINES  # noqa: E402
from tests.crash.verdicts import Report, table  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline", action="append", help="only these (repeatable)")
    parser.add_argument(
        "--messages", type=int, default=1, help="messages per crash point (each a fresh one)"
    )
    args = parser.parse_args()
    wanted = [p for p in ALL_PIPELINES if not args.pipeline or p.name in args.pipeline]
    if not wanted:
        parser.error(f"no such pipeline; known: {', '.join(p.name for p in ALL_PIPELINES)}")
    started = time.perf_counter()
    reports: list[Report] = []
    with world() as running:
        for pipeline in wanted:
            merged = Report(pipeline.name)
            for _ in range(args.messages):
                report = crash_everywhere(running, pipeline, every=True)
                merged.calls = report.calls
                merged.verdicts.extend(report.verdicts)
            reports.append(merged)
            print(f"  {pipeline.name}: {len(merged.calls)} boundaries: ", end="")
            print(", ".join(str(call) for call in merged.calls), flush=True)
    print(table(reports))
    runs = sum(r.crashes for r in reports)
    print(f"{runs} crash runs in {time.perf_counter() - started:.0f} s")
    return 0 if all(not r.failures for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
