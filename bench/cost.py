"""What 1,000 emails cost: AWS requests, provider HTTP calls, Lambda invocations and GB-seconds
per flow (inbound to FreeScout, SES to Gmail, outbound), measured on the real handlers.

AWS is moto in-process, FreeScout, Postmark and Gmail the local stand-ins on loopback. Every
botocore call our code makes is counted through the container's one boto3 Session; what
Lambda's SQS poller does (one ReceiveMessage and one DeleteMessageBatch per batch of up to 10)
and what AWS does on our behalf (SNS publishes from SES, SNS to SQS delivery, which is free)
are counted apart. GB-seconds are each invocation's duration, rounded up to the millisecond
as Lambda bills, times the function's memory in `.chalice/config.json` (stage `prod`).
Durations are this machine's, against an in-process moto: take them as an upper bound on a
loaded laptop, not as Lambda's. `--messages N` per flow (default 50).
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import math
import os
import re
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _stage import SECRETS, in_process  # before chalicelib is imported

ROOT = in_process(MAILROOM_LOG_LEVEL="ERROR")

import boto3  # noqa: E402
import requests  # noqa: E402
from moto import mock_aws  # noqa: E402

from chalicelib.handlers import (  # noqa: E402
    gmail_forwarder,
    inbound_bridge,
    outbound_api,
    outbound_sender,
    router,
    webhooks,
)
from chalicelib.platform.auth import sign  # noqa: E402
from chalicelib.platform.aws import aws_session, reset_clients  # noqa: E402
from chalicelib.platform.secrets import reset_secrets  # noqa: E402
from mailroom_local import freescout, gmail, postmark  # noqa: E402
from mailroom_local.lambda_rules import apply, to_lambda_record  # noqa: E402
from mailroom_local.provision import provision  # noqa: E402
from mailroom_local.receive import notification, parse_verdicts  # noqa: E402
from mailroom_local.stack import serve  # noqa: E402

SAMPLE = ROOT / "tests" / "events" / "postmark_inbound_basic.json"
MAILBOX = "team@gmail.test"


@dataclass
class Flow:
    """What one flow used for its emails."""

    emails: int = 0
    aws: Counter[str] = field(default_factory=Counter)  # our code's calls, service.operation
    poller: Counter[str] = field(default_factory=Counter)  # Lambda's SQS poller
    on_our_behalf: Counter[str] = field(default_factory=Counter)  # SES's own SNS publishes
    http: Counter[str] = field(default_factory=Counter)  # calls to a provider
    invocations: Counter[str] = field(default_factory=Counter)  # per function
    billed_ms: Counter[str] = field(default_factory=Counter)  # per function
    request_units: Counter[str] = field(default_factory=Counter)  # DynamoDB on-demand


def request_units(operation: str, params: dict[str, Any]) -> dict[str, int]:
    """DynamoDB on-demand units of one call, for items under 1 KB (ours are): a write 1 WRU,
    a transactional write 2, a read 1 RRU (strongly consistent, the upper bound)."""
    if operation in {"PutItem", "UpdateItem", "DeleteItem"}:
        return {"WRU": 1}
    if operation == "TransactWriteItems":
        return {"WRU": 2 * len(params.get("TransactItems", []))}
    if operation == "BatchWriteItem":
        return {"WRU": sum(len(v) for v in params.get("RequestItems", {}).values())}
    if operation == "BatchGetItem":
        return {"RRU": sum(len(v.get("Keys", [])) for v in params.get("RequestItems", {}).values())}
    if operation in {"GetItem", "Query"}:
        return {"RRU": 1}
    return {}


# US East (N. Virginia) list prices in USD, taken 2026-12-04 (see README, Cost): per request
# unless named otherwise.
PRICES = {
    "lambda request": 0.20 / 1e6,
    "lambda GB-second": 0.0000166667,
    "api gateway request": 3.50 / 1e6,  # REST API, first 333 million a month
    "sqs request": 0.50 / 1e6,  # FIFO's price, the higher; standard is 0.40
    "sns publish": 0.50 / 1e6,  # standard topic; a FIFO publish is less
    "dynamodb WRU": 0.625 / 1e6,
    "dynamodb RRU": 0.125 / 1e6,
    "s3 put": 0.005 / 1000,
    "s3 get": 0.0004 / 1000,  # GET and HEAD
    "ses receiving": 0.10 / 1000 + 0.09 / 1000,  # per email plus its one 256 KB chunk
}


def dollars_per_million(flow: Flow, memory: dict[str, float], *, received: bool) -> float:
    """What ``flow``'s AWS use costs per million emails at ``PRICES`` (free tiers ignored)."""
    calls = flow.aws + flow.poller + flow.on_our_behalf
    total = 0.0
    for name, count in calls.items():
        service, operation = name.split(".", 1)
        if service == "sqs":
            total += count * PRICES["sqs request"]
        elif service == "sns":
            total += count * PRICES["sns publish"]
        elif service == "s3":
            price = PRICES["s3 put"] if operation.startswith("Put") else PRICES["s3 get"]
            total += count * price
    total += flow.request_units["WRU"] * PRICES["dynamodb WRU"]
    total += flow.request_units["RRU"] * PRICES["dynamodb RRU"]
    total += flow.invocations.total() * PRICES["lambda request"]
    total += flow.invocations["api_handler"] * PRICES["api gateway request"]
    total += sum(
        ms / 1000 * memory[f] * PRICES["lambda GB-second"] for f, ms in flow.billed_ms.items()
    )
    if received:
        total += PRICES["ses receiving"] * flow.emails
    return total / flow.emails * 1e6


def memory_gb() -> dict[str, float]:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    functions = config["stages"]["prod"]["lambda_functions"]
    return {name: f.get("lambda_memory_size", 128) / 1024 for name, f in functions.items()}


class Meter:
    """Counts our AWS calls into the current flow and times handler invocations."""

    def __init__(self) -> None:
        self.flow = Flow()
        self.memory = memory_gb()
        reset_clients()  # a new Session: the clients built from it carry the counter
        events = aws_session().events
        events.register("before-call", self._count)
        events.register("before-parameter-build.dynamodb", self._units)

    def _count(self, model: Any, **_: Any) -> None:
        self.flow.aws[f"{model.service_model.service_name}.{model.name}"] += 1

    def _units(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        for unit, count in request_units(model.name, params).items():
            self.flow.request_units[unit] += count

    def invoke(self, function: str, call: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        answer = call()
        billed_ms = math.ceil((time.perf_counter() - start) * 1000)
        self.flow.invocations[function] += 1
        self.flow.billed_ms[function] += billed_ms
        return answer


def _requests(url: str) -> Counter[str]:
    seen = requests.get(f"{url}/_control/requests", timeout=10).json()["requests"]
    # A resumable upload's session URL carries an id: one row for all of them.
    paths = (re.sub(r"/upload/session/[^/?]+", "/upload/session/{id}", r["path"]) for r in seen)
    return Counter(
        f"{r['method']} {path.split('?')[0]}" for r, path in zip(seen, paths, strict=True)
    )


def _drain(meter: Meter, sqs: Any, queue: Any, function: str, handler: Any) -> None:
    """Feed ``queue`` to ``handler`` in batches of up to 10, as Lambda's poller does."""
    while True:
        meter.flow.poller["sqs.ReceiveMessage"] += 1
        messages = sqs.receive_message(
            QueueUrl=queue.url,
            MaxNumberOfMessages=10,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return
        event = {"Records": [to_lambda_record(m, queue.arn, "us-east-1") for m in messages]}
        result = meter.invoke(function, lambda e=event: handler(e))
        meter.flow.poller["sqs.DeleteMessageBatch"] += 1
        apply(sqs, queue.url, event["Records"], result, report_batch_item_failures=True)


def _per_thousand(flow: Flow, memory: dict[str, float]) -> dict[str, Any]:
    scale = 1000 / flow.emails
    gb_seconds = {f: ms / 1000 * memory[f] * scale for f, ms in flow.billed_ms.items()}
    return {
        "our AWS requests": {k: round(v * scale) for k, v in sorted(flow.aws.items())},
        "Lambda poller SQS requests": {k: round(v * scale) for k, v in flow.poller.items()},
        "AWS requests on our behalf": {k: round(v * scale) for k, v in flow.on_our_behalf.items()},
        "provider HTTP calls": {k: round(v * scale) for k, v in sorted(flow.http.items())},
        "Lambda invocations": {k: round(v * scale) for k, v in flow.invocations.items()},
        "Lambda ms per email": {f: round(ms / flow.emails) for f, ms in flow.billed_ms.items()},
        "DynamoDB request units": {k: round(v * scale) for k, v in flow.request_units.items()},
        "Lambda GB-seconds": round(sum(gb_seconds.values()), 1),
        "USD per million emails": round(
            dollars_per_million(flow, memory, received=bool(flow.on_our_behalf)), 2
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/cost.py")
    parser.add_argument("--messages", type=int, default=50, help="emails per flow (default 50)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    n = parser.parse_args(argv).messages
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    state = Path(tempfile.mkdtemp(prefix="mailroom-cost-"))
    fs = serve(freescout.create_app(api_key="k", state_dir=state))
    pm = serve(postmark.create_app(server_token="t", state_dir=state))
    gm = serve(
        gmail.create_app(
            client_id="cid", client_secret="cs", refresh_token="rt", state_dir=state, dedupe=False
        )
    )
    urls = {name: f"http://127.0.0.1:{s.server_port}" for name, s in (("fs", fs), ("pm", pm))}
    gmail_url = f"http://127.0.0.1:{gm.server_port}"
    results: dict[str, dict[str, Any]] = {}
    with mock_aws():
        resources = provision(
            boto3.client,
            "bench",
            secrets={
                **SECRETS,
                "gmail/team_at_gmail.test": json.dumps(
                    {"client_id": "cid", "client_secret": "cs", "refresh_token": "rt"}
                ),
            },
            default_route={"pattern": "*", "action": "freescout", "target": "1"},
        )
        boto3.client("dynamodb").put_item(
            TableName="mailroom-bench-routes",
            Item={
                "PK": {"S": "ROUTE#*@gmail-bound.example"},
                "SK": {"S": "RULE#v1"},
                "action": {"S": "gmail"},
                "target": {"S": MAILBOX},
                "enabled": {"BOOL": True},
                "description": {"S": "bench"},
            },
        )
        os.environ.update(
            MAILROOM_INBOUND_TOPIC_ARN=resources.topics["inbound"],
            MAILROOM_OUTBOUND_TOPIC_ARN=resources.topics["outbound"],
            MAILROOM_MAIL_BUCKET=resources.bucket,
            MAILROOM_FREESCOUT_URL=urls["fs"],
            MAILROOM_POSTMARK_API_URL=urls["pm"],
            MAILROOM_GMAIL_API_URL=gmail_url,
            MAILROOM_GMAIL_TOKEN_URL=f"{gmail_url}/token",
        )
        reset_secrets()
        sqs = boto3.client("sqs")
        queues = resources.queues
        meter = Meter()
        auth = {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}
        base = json.loads(SAMPLE.read_text())
        run = uuid.uuid4().hex[:8]

        def inbound(i: int) -> None:
            email = {**base, "MessageID": f"{run}-in-{i}", "Headers": []}
            email["To"] = email["OriginalRecipient"] = f"customer{i}@example.com"
            body = json.dumps(email).encode()
            answer = meter.invoke("api_handler", lambda: webhooks.postmark_inbound(auth, body))
            assert answer.status == 200, answer.body

        def received(i: int) -> None:
            key = f"raw/{run}-ses-{i}"
            raw = (
                f"From: Alice <alice@sender.example>\r\nTo: user{i}@gmail-bound.example\r\n"
                f"Subject: Hello\r\nMessage-ID: <{run}-{i}@sender.example>\r\n"
                "Date: Sun, 22 Nov 2026 10:00:00 +0000\r\n\r\nHi there\r\n"
            ).encode()
            boto3.client("s3").put_object(Bucket=resources.bucket, Key=key, Body=raw)
            note = notification(
                raw,
                bucket=resources.bucket,
                key=key,
                recipients=[f"user{i}@gmail-bound.example"],
                verdicts=parse_verdicts(""),
            )
            boto3.client("sns").publish(
                TopicArn=resources.topics["ses-inbound"], Message=json.dumps(note)
            )
            meter.flow.on_our_behalf["sns.Publish (by SES)"] += 1

        def outbound(i: int) -> None:
            request = {
                "correlation_id": f"{run}-out-{i}",
                "from": "Shop <shop@example.com>",
                "to": f"customer{i}@example.org",
                "subject": "Your receipt",
                "text_body": "Thanks for your order.",
            }
            body = json.dumps(request).encode()
            headers = {"X-Mailroom-Signature": sign(body, "s")}
            answer = meter.invoke("api_handler", lambda: outbound_api.submit(headers, body))
            assert answer.status in (200, 202), answer.body

        flows: list[tuple[str, Callable[[int], None], list[tuple[str, str, Any]], str]] = [
            (
                "inbound to FreeScout",
                inbound,
                [("inbound-bridge", "inbound_bridge", inbound_bridge.handle_batch)],
                urls["fs"],
            ),
            (
                "SES to Gmail",
                received,
                [
                    ("ses-inbound", "ses_router", router.handle_batch),
                    ("gmail-forwarder", "gmail_forwarder", gmail_forwarder.handle_batch),
                ],
                gmail_url,
            ),
            (
                "outbound",
                outbound,
                [("outbound-sender", "outbound_sender", outbound_sender.handle_batch)],
                urls["pm"],
            ),
        ]
        for name, produce, consumers, provider in flows:
            produce(10_000)  # a warm container: secrets read, routes cached, clients built
            for queue, function, handler in consumers:
                _drain(meter, sqs, queues[queue], function, handler)
            meter.flow = Flow(emails=n)
            before = _requests(provider)
            for i in range(n):
                produce(i)
            for queue, function, handler in consumers:
                _drain(meter, sqs, queues[queue], function, handler)
            meter.flow.http = _requests(provider) - before
            results[name] = _per_thousand(meter.flow, meter.memory)
    for server in (fs, pm, gm):
        server.shutdown()
    if "--json" in (argv or sys.argv[1:]):
        print(json.dumps(results, indent=2))
        return 0
    print(f"per 1,000 emails, measured on {n} per flow (warm containers, batches of up to 10)")
    for name, figures in results.items():
        print(f"== {name}")
        for label, value in figures.items():
            if isinstance(value, dict):
                total = sum(value.values()) if label != "Lambda ms per email" else ""
                detail = ", ".join(f"{k}={v}" for k, v in value.items())
                print(f"  {label:<28} {total:>7}   [{detail or 'none'}]")
            else:
                print(f"  {label:<28} {value:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
