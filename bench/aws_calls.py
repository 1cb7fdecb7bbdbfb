"""AWS calls per inbound message on the bridge's success path, by service and operation.

Runs the real webhook and bridge in moto with FreeScout answered by `responses`, warms the
container once (routes cached, queue URLs resolved), then counts every botocore call the
bridge makes for (a) a new email and (b) a reply, each alone in its batch (the worst case:
the batch's one recording transaction is shared by up to ten emails). Target: a new email
costs at most 2 DynamoDB writes (its claim and the transaction) and no reads once routes are
cached.
"""

from __future__ import annotations

import base64
import json
import os
from collections import Counter
from typing import Any

from _stage import in_process  # before chalicelib is imported

in_process("test", MAILROOM_FREESCOUT_URL="https://freescout.bench", MAILROOM_LOG_LEVEL="ERROR")

import boto3  # noqa: E402
import responses  # noqa: E402
from moto import mock_aws  # noqa: E402

from chalicelib.handlers import inbound_bridge, webhooks  # noqa: E402
from chalicelib.platform.aws import aws_client, reset_clients  # noqa: E402
from mailroom_local.lambda_rules import apply, to_lambda_record  # noqa: E402
from mailroom_local.provision import provision  # noqa: E402

WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
READS = {"GetItem", "BatchGetItem", "Query", "Scan"}


def _payload(message_id: str, rfc_id: str, reply_to: str | None = None) -> bytes:
    headers = [{"Name": "Message-ID", "Value": f"<{rfc_id}>"}]
    if reply_to:
        headers.append({"Name": "In-Reply-To", "Value": f"<{reply_to}>"})
    return json.dumps(
        {
            "MessageID": message_id,
            "FromFull": {"Email": "customer@example.org", "Name": "A Customer"},
            "ToFull": [{"Email": "support@example.com", "Name": ""}],
            "OriginalRecipient": "support@example.com",
            "Subject": "Hello",
            "TextBody": "Hi there",
            "Headers": headers,
        }
    ).encode()


def main() -> None:
    with mock_aws(), responses.RequestsMock() as freescout:
        sqs = boto3.client("sqs")
        resources = provision(
            boto3.client,
            "test",
            secrets={"postmark/webhook-basic-auth": "u:p", "freescout/api-key": "k"},
            default_route={"pattern": "*", "action": "freescout", "target": "1"},
        )
        queue = resources.queues["inbound-bridge"]
        os.environ["MAILROOM_INBOUND_TOPIC_ARN"] = resources.topics["inbound"]
        os.environ["MAILROOM_MAIL_BUCKET"] = resources.bucket
        reset_clients()
        url = "https://freescout.bench/api/conversations"
        freescout.add(responses.POST, url, status=201, headers={"Resource-ID": "1"}, json={})
        freescout.add(responses.POST, url + "/1/threads", status=201, headers={"Resource-ID": "2"})
        auth = {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}

        calls: Counter[tuple[str, str]] = Counter()

        def count(model: Any, **_: Any) -> None:
            calls[(model.service_model.service_name, model.name)] += 1

        def deliver(body: bytes) -> Counter[tuple[str, str]]:
            assert webhooks.postmark_inbound(auth, body).status == 200
            messages = sqs.receive_message(QueueUrl=queue.url, AttributeNames=["All"])["Messages"]
            event = {"Records": [to_lambda_record(m, queue.arn, "us-east-1") for m in messages]}
            calls.clear()
            result = inbound_bridge.handle_batch(event)
            counted = Counter(calls)
            apply(sqs, queue.url, event["Records"], result, report_batch_item_failures=False)
            return counted

        deliver(_payload("warm-up", "warm@example.org"))  # fills caches, as a warm container
        for service in ("dynamodb", "sqs", "s3", "ssm", "sns"):
            aws_client(service).meta.events.register("before-call", count)
        cases = {
            "new email": deliver(_payload("m-1", "first@example.org")),
            "reply": deliver(_payload("m-2", "second@example.org", reply_to="first@example.org")),
        }

    print("AWS calls per message in the inbound bridge (warm container, routes cached)")
    for case, counted in cases.items():
        writes = sum(n for (svc, op), n in counted.items() if svc == "dynamodb" and op in WRITES)
        reads = sum(n for (svc, op), n in counted.items() if svc == "dynamodb" and op in READS)
        detail = ", ".join(f"{svc}.{op}={n}" for (svc, op), n in sorted(counted.items()))
        print(f"  {case:<10} dynamodb writes={writes} reads={reads}   [{detail or 'none'}]")
    new = cases["new email"]
    writes = sum(n for (s, op), n in new.items() if s == "dynamodb" and op in WRITES)
    reads = sum(n for (s, op), n in new.items() if s == "dynamodb" and op in READS)
    verdict = "met" if writes <= 2 and reads == 0 else "missed"
    print(f"target new email <= 2 DynamoDB writes and 0 reads: {verdict}")


if __name__ == "__main__":
    main()
