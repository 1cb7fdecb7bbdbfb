"""Peak memory of each mail-handling function for the largest email it can be handed.

SES accepts mail up to 40 MB (reference E.1); the webhook and the outbound API take bodies up
to mailroom's own limit (under API Gateway's 10 MB). AWS runs in a moto server process and
the FreeScout, Gmail, SES and Postmark stand-ins in another, so neither counts. Each handler
runs in a fresh process of its own, fed the Lambda event the previous stage produced (router
→ bridge, Gmail forwarder, bouncer; outbound topic → sender), and reports its peak RSS (the
whole process: interpreter, imports, handler; what Lambda's memory setting limits) and its
Python heap peak (tracemalloc), against ``lambda_memory_size`` in ``.chalice/config.json``
(prod). Target: under 50 %.

    .venv/bin/python bench/peak_memory.py            # 40 MB
    .venv/bin/python bench/peak_memory.py --mb 4     # a quick run
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import threading
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STAGE = "bench"
REGION = "us-east-1"
MAILBOX = "team@gmail.bench"
OAUTH = {"client_id": "cid", "client_secret": "cs", "refresh_token": "rt"}
MB = 1024 * 1024
# The webhook's ceiling is API Gateway's request size (10 MB) or mailroom's own, if lower.
API_GATEWAY_MAX_BYTES = 10 * 1024 * 1024
# Where a function's memory was raised so it stays under half at the largest mail, and why.
RAISED = {
    "inbound_bridge": "1024 MB: a 40 MB email is parsed, its attachments decoded and sent to"
    " FreeScout as base64 JSON; about 300 MB at peak, 59 % of 512 MB",
}
HANDLERS = {
    "ses_router": ("chalicelib.handlers.router", "handle_batch"),
    "inbound_bridge": ("chalicelib.handlers.inbound_bridge", "handle_batch"),
    "gmail_forwarder": ("chalicelib.handlers.gmail_forwarder", "handle_batch"),
    "bouncer": ("chalicelib.handlers.bouncer", "handle_batch"),
    "api_handler": ("chalicelib.handlers.webhooks", "postmark_inbound"),
    "outbound_sender": ("chalicelib.handlers.outbound_sender", "handle_batch"),
}
BASE_ENV = {
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "MAILROOM_STAGE": STAGE,
    "MAILROOM_LOG_LEVEL": "INFO",  # the outcome line says what each handler did
    "MAILROOM_BOUNCE_SENDER": "mailer-daemon@example.com",
    "MAILROOM_HTTP_TIMEOUT_SECONDS": "60",
    "MAILROOM_GMAIL_TIMEOUT_SECONDS": "60",
}


def email_of(size: int, message_id: str) -> bytes:
    """A text body and one incompressible attachment, ``size`` bytes of MIME in all."""

    def build(attachment_bytes: int) -> bytes:
        message = EmailMessage()
        message["From"] = "Alice <alice@sender.example>"
        message["To"] = "support@example.com"
        message["Subject"] = "The quarterly report"
        message["Date"] = "Sun, 22 Nov 2026 10:00:00 +0000"
        message["Message-ID"] = message_id
        message.set_content("Please find the report attached.\n" * 20)
        message.add_attachment(
            os.urandom(attachment_bytes),
            maintype="application",
            subtype="octet-stream",
            filename="report.bin",
        )
        return bytes(message.as_bytes())

    small = build(1000)
    # base64 with 76-character lines: 4 bytes out per 3 in, plus a line break per 76.
    raw = build(int((size - len(small)) * 3 / 4 * 76 / 78))
    return raw[:size] if len(raw) <= size else build(int((size - len(small)) * 0.73))


# -- the parent: stack, events, children ------------------------------------------------


def start(command: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """A helper process and the first line it prints."""
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def run_child(function: str, event_file: Path, env: dict[str, str]) -> dict[str, Any]:
    answer = subprocess.run(
        [sys.executable, __file__, "--child", function, str(event_file)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    if answer.returncode != 0:
        raise SystemExit(f"{function} failed:\n{answer.stderr[-3000:]}")
    lines = answer.stdout.strip().splitlines()
    measured = dict(json.loads(lines[-1]))
    # The handler's own outcome, from its log line: "success", "imported", "bounced", ...
    for line in lines[:-1]:
        logged = json.loads(line) if line.startswith("{") else {}
        if logged.get("message") == "message outcome":
            measured["outcome"] = str(logged.get("outcome", measured["outcome"]))
    return measured


def memory_sizes(stage: str = "prod") -> dict[str, int]:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    functions = config["stages"][stage]["lambda_functions"]
    return {name: int(f.get("lambda_memory_size", 128)) for name, f in functions.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=40.0, help="size of the SES email (MB)")
    args = parser.parse_args()
    import boto3
    import requests

    from chalicelib.providers.gmail.client import parameter_name
    from mailroom_local.lambda_rules import to_lambda_record
    from mailroom_local.provision import provision

    env = {**os.environ, **BASE_ENV}
    moto, line = start([sys.executable, "-m", "mailroom_local.moto_process"], env)
    endpoint = f"http://127.0.0.1:{line.split()[1]}"
    standins, line = start([sys.executable, __file__, "--serve"], env)
    urls = json.loads(line)
    try:
        os.environ.update(BASE_ENV)
        os.environ["AWS_ENDPOINT_URL"] = endpoint

        def client(service: str) -> Any:
            return boto3.client(service, region_name=REGION, endpoint_url=endpoint)

        resources = provision(
            client,
            STAGE,
            secrets={
                "postmark/webhook-basic-auth": "u:p",
                "freescout/api-key": "k",
                "postmark/server-token": "t",
                "outbound/signing-secret": "s",
                parameter_name(MAILBOX): json.dumps(OAUTH),
            },
        )
        env.update(
            MAILROOM_AWS_ENDPOINT_URL=endpoint,
            MAILROOM_INBOUND_TOPIC_ARN=resources.topics["inbound"],
            MAILROOM_OUTBOUND_TOPIC_ARN=resources.topics["outbound"],
            MAILROOM_MAIL_BUCKET=resources.bucket,
            MAILROOM_FREESCOUT_URL=urls["freescout"],
            MAILROOM_GMAIL_API_URL=urls["gmail"],
            MAILROOM_GMAIL_TOKEN_URL=urls["gmail"] + "/token",
            MAILROOM_SES_ENDPOINT_URL=urls["ses"],
            MAILROOM_POSTMARK_API_URL=urls["postmark"],
        )
        s3, sqs, dynamodb = client("s3"), client("sqs"), client("dynamodb")
        size = int(args.mb * MB)
        work = Path(tempfile.mkdtemp(prefix="mailroom-peak-"))

        def route(action: str, target: str) -> None:
            dynamodb.put_item(
                TableName=f"mailroom-{STAGE}-routes",
                Item={
                    "PK": {"S": "ROUTE#*"},
                    "SK": {"S": "RULE#v1"},
                    "action": {"S": action},
                    "target": {"S": target},
                    "enabled": {"BOOL": True},
                    "description": {"S": "bench"},
                },
            )

        def event_from(queue: str) -> Path:
            found = sqs.receive_message(
                QueueUrl=resources.queues[queue].url,
                MaxNumberOfMessages=1,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
                WaitTimeSeconds=5,
            ).get("Messages", [])
            if not found:
                raise SystemExit(f"nothing arrived in {queue}")
            record = to_lambda_record(found[0], resources.queues[queue].arn, REGION)
            path = work / f"{queue}.json"
            path.write_text(json.dumps({"Records": [record]}))
            return path

        def receive(ses_id: str, *, truncated: bool = False) -> None:
            rfc_id = f"<{ses_id}@sender.example>"
            s3.put_object(Bucket=resources.bucket, Key=f"raw/{ses_id}", Body=email_of(size, rfc_id))
            common: dict[str, Any] = {"from": ["alice@sender.example"], "subject": "Report"}
            if not truncated:
                common["messageId"] = rfc_id
            now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            note = {
                "notificationType": "Received",
                "receipt": {
                    "timestamp": now,
                    "recipients": ["support@example.com"],
                    **{
                        f"{v}Verdict": {"status": "PASS"}
                        for v in ("spam", "virus", "spf", "dkim", "dmarc")
                    },
                    "action": {
                        "type": "S3",
                        "bucketName": resources.bucket,
                        "objectKey": f"raw/{ses_id}",
                    },
                },
                "mail": {
                    "timestamp": now,
                    "source": "bounces@sender.example",
                    "messageId": ses_id,
                    "destination": ["support@example.com"],
                    "headersTruncated": truncated,
                    "headers": [],
                    "commonHeaders": common,
                },
            }
            envelope = {
                "Type": "Notification",
                "MessageId": str(uuid.uuid4()),
                "TopicArn": f"arn:aws:sns:{REGION}:123456789012:mailroom-{STAGE}-ses-inbound",
                "Message": json.dumps(note),
                "Timestamp": now,
            }
            sqs.send_message(
                QueueUrl=resources.queues["ses-inbound"].url, MessageBody=json.dumps(envelope)
            )
            requests.post(
                urls["ses"] + "/_control/received",
                json={"message_id": ses_id, "received_at": now},
                timeout=5,
            )

        results: dict[str, dict[str, Any]] = {}
        for action, target, worker, queue in (
            ("freescout", "1", "inbound_bridge", "inbound-bridge"),
            ("gmail", MAILBOX, "gmail_forwarder", "gmail-forwarder"),
            ("bounce", "", "bouncer", "bouncer"),
        ):
            route(action, target)
            receive(f"bench-{worker}", truncated=action == "bounce")
            routed = run_child("ses_router", event_from("ses-inbound"), env)
            results["ses_router"] = max(
                results.get("ses_router", routed), routed, key=lambda r: r["peak_rss_mb"]
            )
            results[worker] = run_child(worker, event_from(queue), env)
        webhook = work / "webhook.json"
        webhook.write_text(json.dumps({"body": postmark_payload(WEBHOOK_BYTES)}))
        results["api_handler"] = run_child("api_handler", webhook, env)
        os.environ.update(env)
        from chalicelib.platform import claimcheck

        claimcheck.publish(
            resources.topics["outbound"],
            outbound_request(WEBHOOK_BYTES),
            group_key="ann@example.org",
            deduplication_id="bench-outbound",
        )
        results["outbound_sender"] = run_child(
            "outbound_sender", event_from("outbound-sender"), env
        )
    finally:
        for process in (moto, standins):
            process.terminate()
            process.wait(timeout=10)

    sizes = memory_sizes()
    print(
        f"peak memory per function (SES email {args.mb:g} MB; webhook body"
        f" {WEBHOOK_BYTES / MB:.1f} MB, the most it accepts)"
    )
    print(
        f"  {'function':<16} {'outcome':<14} {'peak RSS':>9} {'heap peak':>10}"
        f" {'memory':>7} {'share':>6}"
    )
    missed = []
    for name in HANDLERS:
        found = results[name]
        share = found["peak_rss_mb"] / sizes[name]
        if share >= 0.5:
            missed.append(name)
        print(
            f"  {name:<16} {found['outcome']:<14} {found['peak_rss_mb']:>7.0f}MB "
            f"{found['heap_peak_mb']:>8.0f}MB {sizes[name]:>5}MB {share:>6.0%}"
        )
    for name, reason in RAISED.items():
        print(f"  {name} memory raised to {reason}")
    print("target each under 50 % of its memory: " + ("met" if not missed else f"missed {missed}"))


def _webhook_bytes() -> int:
    from chalicelib.platform.settings import DEFAULT_MAX_WEBHOOK_BYTES

    return min(API_GATEWAY_MAX_BYTES, DEFAULT_MAX_WEBHOOK_BYTES) - 64 * 1024


def outbound_request(size: int) -> str:
    """The largest outbound request the API takes, most of it one attachment."""
    content = base64.b64encode(os.urandom(int(size * 0.74))).decode()
    return json.dumps(
        {
            "correlation_id": "bench-outbound",
            "from": "Shop <shop@example.com>",
            "to": "Ann Customer <ann@example.org>",
            "subject": "Your invoice",
            "text_body": "Your invoice is attached.",
            "attachments": [
                {"name": "invoice.pdf", "content": content, "content_type": "application/pdf"}
            ],
        }
    )


def postmark_payload(size: int) -> str:
    """A Postmark inbound payload of about ``size`` bytes, most of it one attachment."""
    content = base64.b64encode(os.urandom(int(size * 0.74))).decode()
    return json.dumps(
        {
            "MessageID": str(uuid.uuid4()),
            "FromFull": {"Email": "alice@sender.example", "Name": "Alice"},
            "ToFull": [{"Email": "support@example.com", "Name": ""}],
            "OriginalRecipient": "support@example.com",
            "Subject": "The quarterly report",
            "TextBody": "Please find the report attached.",
            "Headers": [{"Name": "Message-ID", "Value": "<webhook@sender.example>"}],
            "Attachments": [
                {"Name": "report.bin", "Content": content, "ContentType": "application/pdf"}
            ],
        }
    )


# -- a child: one handler, one event, measured ------------------------------------------


def child(function: str, event_file: Path) -> None:
    import importlib
    import tracemalloc

    module_name, attribute = HANDLERS[function]
    handler = getattr(importlib.import_module(module_name), attribute)
    if function == "gmail_forwarder":
        import googleapiclient.discovery  # noqa: F401 (imported at cold start in Lambda too)
    event = json.loads(event_file.read_text())
    tracemalloc.start()
    if function == "api_handler":
        auth = {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}
        body = event.pop("body").encode()
        reply = handler(auth, body)
        outcome = str(reply.status)
    else:
        result = handler(event)
        failed = result.get("batchItemFailures") if isinstance(result, dict) else None
        outcome = "failed" if failed else "ok"
    _, heap_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forking parent.
    status = Path("/proc/self/status").read_text().splitlines()
    peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    print(
        json.dumps(
            {"outcome": outcome, "peak_rss_mb": peak_kb / 1024, "heap_peak_mb": heap_peak / MB}
        )
    )


def serve() -> None:
    """The FreeScout, Gmail and SES stand-ins on free loopback ports, until stdin closes."""
    from werkzeug.serving import make_server

    from mailroom_local import freescout, gmail, postmark, ses

    state = Path(tempfile.mkdtemp(prefix="mailroom-peak-standins-"))
    apps = {
        "freescout": freescout.create_app(api_key="k", state_dir=state),
        "gmail": gmail.create_app(**OAUTH, state_dir=state, dedupe=False),
        "ses": ses.create_app(min_interval_seconds=0.0),
        "postmark": postmark.create_app(server_token="t", state_dir=state),
    }
    urls = {}
    for name, app in apps.items():
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        urls[name] = f"http://127.0.0.1:{server.server_port}"
    print(json.dumps(urls), flush=True)
    sys.stdin.read()


WEBHOOK_BYTES = _webhook_bytes()

if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], Path(sys.argv[3]))
    elif sys.argv[1:2] == ["--serve"]:
        serve()
    else:
        main()
