"""DLQ redrive rate: requested versus achieved for 200 messages (target: within ±10 %).

``mailroom dlq redrive --rate R`` (through click's CliRunner, as an operator runs it) moves
200 dead letters in 20 message groups from the inbound DLQ back to its source queue, AWS in
moto (in-process). The achieved rate is messages moved over the wall time of the move, as
the command reports it; the wall time is also measured around the whole command (which
includes start-up and the first receive).

In-process moto spends time proportional to a queue's depth on every call, so it has a
ceiling of its own (tens of messages a second on a busy laptop; real SQS answers a call in
~20 ms whatever the depth). The bench first measures that ceiling (``--rate 1000``), then
asks for 10/s and for half and three quarters of the ceiling. Exits 1 if any of those
misses by more than 10 %.
"""

from __future__ import annotations

import json
import sys
import time
import uuid

from _stage import in_process  # before chalicelib is imported

in_process()

import boto3  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from moto import mock_aws  # noqa: E402

from mailroom_cli.main import cli  # noqa: E402
from mailroom_local.provision import provision  # noqa: E402

MESSAGES = 200
GROUPS = 20
TOLERANCE = 0.10
UNLIMITED = 1000.0


def _fill(sqs: object, dlq_url: str) -> None:
    for start in range(0, MESSAGES, 10):
        sqs.send_message_batch(  # type: ignore[attr-defined]
            QueueUrl=dlq_url,
            Entries=[
                {
                    "Id": str(i),
                    "MessageBody": json.dumps({"MessageID": f"bench-{start + i}"}),
                    "MessageGroupId": f"g{(start + i) % GROUPS}",
                    "MessageDeduplicationId": str(uuid.uuid4()),
                    "MessageAttributes": {
                        "mailroom_reason": {"DataType": "String", "StringValue": "bench"},
                        "mailroom_error_class": {"DataType": "String", "StringValue": "Bench"},
                    },
                }
                for i in range(10)
            ],
        )


def run(rate: float) -> tuple[float, int, float]:
    """Achieved rate, messages moved and wall seconds of one redrive of 200 dead letters."""
    with mock_aws():
        resources = provision(
            lambda service: boto3.client(service, region_name="us-east-1"), "bench", secrets={}
        )
        sqs = boto3.client("sqs", region_name="us-east-1")
        _fill(sqs, resources.queues["inbound-bridge"].dlq_url)
        started = time.perf_counter()
        result = CliRunner().invoke(
            cli, ["--stage", "bench", "--json", "dlq", "redrive", "inbound", "--rate", str(rate)]
        )
        wall = time.perf_counter() - started
        if result.exit_code != 0:
            raise SystemExit(f"redrive failed: {result.output}")
        [row] = json.loads(result.stdout)
        return float(row["achieved_rate"]), int(row["moved"]), wall


def main() -> int:
    ceiling, moved, wall = run(UNLIMITED)
    print(
        f"backend ceiling (--rate {UNLIMITED:.0f}): {ceiling:.1f}/s, {moved} moved in {wall:.1f} s"
    )
    print(f"{'requested/s':>12} {'achieved/s':>11} {'off':>7} {'moved':>6} {'wall s':>7}")
    failed = False
    for rate in (10.0, round(ceiling * 0.5, 1), round(ceiling * 0.75, 1)):
        achieved, moved, wall = run(rate)
        off = (achieved - rate) / rate
        failed |= abs(off) > TOLERANCE or moved != MESSAGES
        print(f"{rate:>12.1f} {achieved:>11.2f} {off:>+7.1%} {moved:>6} {wall:>7.2f}")
    print(f"target: every achieved rate within ±{TOLERANCE:.0%} of the requested one")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
