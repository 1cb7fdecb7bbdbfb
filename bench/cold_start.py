"""Cold-start import time: `app` for each function versus a bare `import boto3`, fresh processes.

Each figure is the median (and the minimum) of N fresh interpreters, the cases taking turns
so a machine that slows down affects all alike (`python -X importtime` is not used: it
slows imports unevenly). "app" is what every Lambda function of the app imports at init;
"app + <pipeline>" adds the handler module that function imports on its first event, which
is what a cold request really waits for. Target (issue 2): at most 1.3 times boto3.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = 15

CASES = {
    "boto3": "import boto3",
    "app": "import app",
    "app + webhook": "import app, boto3; import chalicelib.handlers.webhooks",
    "app + events webhook": "import app, boto3; import chalicelib.handlers.postmark_events",
    "app + inbound_bridge": "import app, boto3; import chalicelib.handlers.inbound_bridge",
    "app + outbound_api": "import app, boto3; import chalicelib.handlers.outbound_api",
    "app + outbound_sender": "import app, boto3; import chalicelib.handlers.outbound_sender",
}

PROBE = """
import time
t = time.perf_counter()
{stmt}
print((time.perf_counter() - t) * 1000)
"""


def sample(stmt: str) -> float | None:
    """Milliseconds ``stmt`` takes in a fresh interpreter, or None if it fails."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(stmt=stmt)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "MAILROOM_STAGE": "bench"},
    )
    return float(out.stdout.strip()) if out.returncode == 0 else None


def measure() -> dict[str, tuple[float, float] | None]:
    """(median, minimum) per case; the cases take turns, so a slowing machine hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in CASES}
    failed: set[str] = set()
    for _ in range(RUNS):
        for name, stmt in CASES.items():
            ms = sample(stmt)
            if ms is None:
                failed.add(name)
            else:
                samples[name].append(ms)
    return {
        name: None if name in failed else (statistics.median(values), min(values))
        for name, values in samples.items()
    }


def main() -> None:
    results = measure()
    if results["boto3"] is None:
        raise SystemExit("boto3 does not import")
    base, base_min = results["boto3"]
    print(f"cold-start import, {RUNS} fresh processes each: median (minimum)")
    for name, found in results.items():
        if found is None:
            print(f"  {name:<24} n/a (import failed)")
            continue
        ms, least = found
        print(
            f"  {name:<24} {ms:7.1f} ms  {ms / base:4.2f} x boto3"
            f"   ({least:6.1f} ms  {least / base_min:4.2f} x)"
        )
    # app.py imports boto3 lazily, so "app" alone flatters; judge what a cold request waits for.
    worst = max(found[0] for name, found in results.items() if name != "boto3" and found)
    verdict = "met" if worst <= 1.3 * base else "missed"
    print(f"target: each function's imports <= 1.3 x boto3 (worst {worst / base:.2f} x): {verdict}")
    if (
        "googleapiclient"
        in subprocess.run(
            [sys.executable, "-c", "import app, sys; print(' '.join(sys.modules))"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    ):
        print("WARNING: googleapiclient is imported by app")


if __name__ == "__main__":
    main()
