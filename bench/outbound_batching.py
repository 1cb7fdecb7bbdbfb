"""Outbound batching: HTTP calls per message and wall time, batched versus one call per message.

The real sender (``handlers/outbound_sender``) runs over 100 queued requests against the
Postmark stand-in on loopback with 50 ms added to every answer, AWS in moto (in-process).
"Batched" is what production does: SQS batches of 10, one ``/email/batch`` call each.
"One per message" is the same code fed batches of one record (a batch size of 1), i.e. one
Postmark call per message. HTTP calls are counted by the stand-in itself. Wall time is per
10 messages (one batch of 10 versus ten batches of 1). Target: at least 5x fewer
calls and at least 3x less wall time.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _stage import in_process  # before chalicelib is imported

in_process(MAILROOM_LOG_LEVEL="ERROR")

import boto3  # noqa: E402
import requests  # noqa: E402
from moto import mock_aws  # noqa: E402

from chalicelib.handlers import outbound_sender  # noqa: E402
from chalicelib.platform.aws import aws_client, reset_clients  # noqa: E402
from mailroom_local import postmark  # noqa: E402
from mailroom_local.lambda_rules import apply, to_lambda_record  # noqa: E402
from mailroom_local.provision import provision  # noqa: E402
from mailroom_local.stack import serve  # noqa: E402

MESSAGES = 100
LATENCY_MS = 50
TOKEN = "bench-token"


def _fill(sqs: Any, queue_url: str, run: str) -> None:
    for i in range(MESSAGES):
        request = {
            "correlation_id": f"{run}-{i}",
            "from": "Shop <shop@example.com>",
            "to": f"customer{i}@example.org",
            "subject": "Your receipt",
            "text_body": "Thanks for your order.",
        }
        sqs.send_message(
            QueueUrl=queue_url,
            MessageBody=json.dumps(request),
            MessageGroupId=f"g{i}",
            MessageDeduplicationId=f"{run}-{i}",
        )


def _drain(sqs: Any, queue: Any, batch_size: int) -> list[float]:
    """Run the sender until the queue is empty; seconds per 10 messages."""
    per_ten: list[float] = []
    elapsed, handled = 0.0, 0
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue.url, MaxNumberOfMessages=batch_size, AttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            return per_ten
        event = {"Records": [to_lambda_record(m, queue.arn, "us-east-1") for m in messages]}
        started = time.perf_counter()
        result = outbound_sender.handle_batch(event)
        elapsed += time.perf_counter() - started
        apply(sqs, queue.url, event["Records"], result, report_batch_item_failures=False)
        handled += len(messages)
        if handled % 10 == 0:
            per_ten.append(elapsed)
            elapsed = 0.0


def _calls(url: str) -> int:
    seen = requests.get(f"{url}/_control/requests", timeout=5).json()["requests"]
    return sum(1 for r in seen if r["path"] in {"/email", "/email/batch"})


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request is noise
    with mock_aws(), tempfile.TemporaryDirectory() as state:
        server = serve(postmark.create_app(server_token=TOKEN, state_dir=Path(state)))
        url = f"http://127.0.0.1:{server.server_port}"
        requests.post(f"{url}/_control/faults", json={"delay_ms": LATENCY_MS}, timeout=5)
        resources = provision(boto3.client, "bench", secrets={"postmark/server-token": TOKEN})
        os.environ["MAILROOM_POSTMARK_API_URL"] = url
        reset_clients()
        sqs = boto3.client("sqs")
        queue = resources.queues["outbound-sender"]
        dynamodb: Counter[str] = Counter()  # the handler's DynamoDB calls, by operation
        aws_client("dynamodb").meta.events.register(
            "before-call", lambda model, **_: dynamodb.update([model.name])
        )
        results = {}
        writes: dict[str, str] = {}
        for label, batch_size in (("one per message", 1), ("batched", 10)):
            before = _calls(url)
            dynamodb.clear()
            _fill(sqs, queue.url, label.replace(" ", "-"))
            per_ten = _drain(sqs, queue, batch_size)
            results[label] = ((_calls(url) - before) / MESSAGES, statistics.median(per_ten))
            writes[label] = ", ".join(
                f"{op} {n / (MESSAGES / 10):g}" for op, n in sorted(dynamodb.items())
            )
        sent = len(requests.get(f"{url}/_control/messages", timeout=5).json()["messages"])
        server.shutdown()

    print(
        f"outbound sender, {MESSAGES} messages per mode, Postmark stand-in +{LATENCY_MS} ms, "
        f"{sent} messages accepted in all"
    )
    for label, (calls, seconds) in results.items():
        print(
            f"  {label:<16} {calls:5.2f} HTTP calls/message   "
            f"{seconds * 1000:7.1f} ms per 10 messages (median)"
        )
    print("  DynamoDB calls per 10 messages:")
    for label, counted in writes.items():
        print(f"    {label:<16} {counted}")
    single, batched = results["one per message"], results["batched"]
    call_ratio, time_ratio = single[0] / batched[0], single[1] / batched[1]
    print(f"  fewer calls: {call_ratio:.1f}x (target >= 5x)   less wall time: {time_ratio:.1f}x")
    verdict = "met" if call_ratio >= 5 and time_ratio >= 3 else "missed"
    print(f"target >= 5x fewer calls and >= 3x less wall time: {verdict}")


if __name__ == "__main__":
    main()
