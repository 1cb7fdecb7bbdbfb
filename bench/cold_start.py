"""Cold-start import time: `app` for each function versus a bare `import boto3`, fresh processes.

Each figure is the median of N fresh interpreters (`python -X importtime` is not used: it
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


def measure(stmt: str) -> float | None:
    samples = []
    for _ in range(RUNS):
        out = subprocess.run(
            [sys.executable, "-c", PROBE.format(stmt=stmt)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            env={"PATH": "/usr/bin:/bin", "MAILROOM_STAGE": "bench"},
        )
        if out.returncode != 0:
            return None
        samples.append(float(out.stdout.strip()))
    return statistics.median(samples)


def main() -> None:
    results = {name: measure(stmt) for name, stmt in CASES.items()}
    base = results["boto3"]
    if base is None:
        raise SystemExit("boto3 does not import")
    print(f"cold-start import, median of {RUNS} fresh processes")
    for name, ms in results.items():
        shown = "n/a (import failed)" if ms is None else f"{ms:7.1f} ms  {ms / base:4.2f} x boto3"
        print(f"  {name:<24} {shown}")
    # app.py imports boto3 lazily, so "app" alone flatters; judge what a cold request waits for.
    worst = max(ms for name, ms in results.items() if name != "boto3" and ms is not None)
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
