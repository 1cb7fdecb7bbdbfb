"""A stage in moto with the stand-ins on loopback, run like AWS runs it, crash after crash.

``World`` is one stage: moto in-process, the Postmark, FreeScout, Gmail and SES stand-ins
served on loopback, and a pump that runs each queue's handler as Lambda would. ``crash_run``
sends one message through a pipeline with a crash before or after one outbound call of the
stage under test, then does what AWS and the callers would do next — the crashed batch
becomes visible again once its visibility timeout (longer than any idempotency lock) is over,
an HTTP caller retries — and runs every queue to quiescence. It then judges the run by what
the providers hold and what the dead-letter queues hold.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import requests
from moto import mock_aws

from chalicelib.handlers import dispatch
from chalicelib.handlers.http import HttpReply
from chalicelib.platform import batch
from chalicelib.platform.aws import reset_clients
from chalicelib.platform.secrets import reset_secrets
from mailroom_local import freescout, gmail, lambda_rules, postmark, ses
from mailroom_local.provision import Queue, provision
from mailroom_local.stack import serve
from tests.crash.boundaries import Boundaries, Crash, When
from tests.crash.verdicts import Report, Verdict, crash_points

REGION = "us-east-1"
WEBHOOK_USER, WEBHOOK_PASSWORD = "postmark", "secret-pass"
POSTMARK_TOKEN, FREESCOUT_KEY, SIGNING_SECRET = "postmark-token", "freescout-key", "sign-me"
GMAIL_MAILBOX = "team@gmail.test"
BOUNCE_SENDER = "mailer-daemon@example.com"
PROBE_ADDRESS = "probe@crash.test"
# Queue → the module whose ``handle_batch`` Lambda runs on it. A new queue pipeline is a line.
HANDLERS = {
    "inbound-bridge": "chalicelib.handlers.inbound_bridge",
    "outbound-sender": "chalicelib.handlers.outbound_sender",
    "ses-inbound": "chalicelib.handlers.router",
    "gmail-forwarder": "chalicelib.handlers.gmail_forwarder",
    "bouncer": "chalicelib.handlers.bouncer",
    "ses-feedback": "chalicelib.handlers.ses_feedback",
}
# An HTTP caller's retries after a 5xx or no answer (Postmark retries for hours; enough here).
CALLER_RETRIES = 5
# Rounds of "run every queue once" before a run is declared stuck.
MAX_ROUNDS = 40


@dataclass(frozen=True)
class QueueEntry:
    """The message waits in ``queue``; the stage under test is that queue's handler."""

    queue: str


@dataclass(frozen=True)
class HttpEntry:
    """The stage under test is an HTTP handler; ``call`` is one request, the caller's retry
    is the same request again."""

    call: Callable[[], HttpReply]


@dataclass(frozen=True)
class ScheduledEntry:
    """The stage under test is a scheduled function: an asynchronous invocation, which
    Lambda retries twice when the function dies."""

    call: Callable[[], Any]


Entry = QueueEntry | HttpEntry | ScheduledEntry
# Lambda's retries of an asynchronous invocation that failed.
ASYNC_RETRIES = 2


@dataclass(frozen=True)
class Pipeline:
    """One row of the harness's table: how a fresh message enters (``start``, given a run
    id to make it unique), and what the providers count as its effect."""

    name: str
    start: Callable[[World, str], Entry]
    effects: Callable[[World, str], dict[str, int]]
    # Why a crash between the provider's effect and its record can double it, where the
    # provider offers no way to prove the effect (the run is still counted as doubled).


class World:
    """One stage in moto, the stand-ins on loopback, and Lambda's rules for running queues."""

    def __init__(self, stage: str, state_dir: Path) -> None:
        self.stage = stage
        self.state_dir = state_dir
        self.boundaries = Boundaries()
        self.queues: dict[str, Queue] = {}
        self.topics: dict[str, str] = {}
        self.bucket = ""
        self.urls: dict[str, str] = {}
        self.in_flight: dict[str, list[str]] = {}
        self.sqs: Any = None
        self.dynamodb: Any = None
        self.dlq_urls: list[str] = []

    # --- setting up -------------------------------------------------------------------

    @contextlib.contextmanager
    def running(self) -> Iterator[World]:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        apps = {
            "postmark": postmark.create_app(server_token=POSTMARK_TOKEN, state_dir=self.state_dir),
            "freescout": freescout.create_app(api_key=FREESCOUT_KEY, state_dir=self.state_dir),
            "gmail": gmail.create_app(
                client_id="cid",
                client_secret="cs",
                refresh_token="rt",
                state_dir=self.state_dir,
                dedupe=False,
            ),
            "ses": ses.create_app(min_interval_seconds=0),
            "api": _webhook_app,
        }
        servers = {name: serve(app) for name, app in apps.items()}
        self.urls = {name: f"http://127.0.0.1:{s.server_port}" for name, s in servers.items()}
        try:
            with _environment(self._variables()), mock_aws(), self.boundaries.installed():
                self._provision()
                yield self
        finally:
            for server in servers.values():
                server.shutdown()

    def _variables(self) -> dict[str, str]:
        return {
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "MAILROOM_STAGE": self.stage,
            "MAILROOM_PROOF_DELAY_SECONDS": "0",
            "MAILROOM_HTTP_TIMEOUT_SECONDS": "2",
            "MAILROOM_LOG_LEVEL": "ERROR",
            "MAILROOM_POSTMARK_API_URL": self.urls["postmark"],
            "MAILROOM_FREESCOUT_URL": self.urls["freescout"],
            "MAILROOM_GMAIL_API_URL": self.urls["gmail"],
            "MAILROOM_GMAIL_TOKEN_URL": f"{self.urls['gmail']}/token",
            "MAILROOM_SES_ENDPOINT_URL": self.urls["ses"],
            "MAILROOM_BOUNCE_SENDER": BOUNCE_SENDER,
            "MAILROOM_PROBE_ENABLED": "true",
            "MAILROOM_PROBE_WEBHOOK_URL": f"{self.urls['api']}/webhooks/postmark/inbound",
            "MAILROOM_PROBE_ADDRESS": PROBE_ADDRESS,
            "MAILROOM_PROBE_FROM": "probe@example.com",
        }

    def _provision(self) -> None:
        resources = provision(
            lambda service: boto3.client(service, region_name=REGION),
            self.stage,
            secrets={
                "postmark/webhook-basic-auth": f"{WEBHOOK_USER}:{WEBHOOK_PASSWORD}",
                "freescout/api-key": FREESCOUT_KEY,
                "postmark/server-token": POSTMARK_TOKEN,
                "outbound/signing-secret": SIGNING_SECRET,
            },
        )
        self.queues, self.topics, self.bucket = resources.queues, resources.topics, resources.bucket
        os.environ["MAILROOM_INBOUND_TOPIC_ARN"] = self.topics["inbound"]
        os.environ["MAILROOM_OUTBOUND_TOPIC_ARN"] = self.topics["outbound"]
        os.environ["MAILROOM_MAIL_BUCKET"] = self.bucket
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.dynamodb = boto3.client("dynamodb", region_name=REGION)
        boto3.client("ssm", region_name=REGION).put_parameter(
            Name=f"/mailroom/{self.stage}/gmail/team_at_gmail.test",
            Value=json.dumps({"client_id": "cid", "client_secret": "cs", "refresh_token": "rt"}),
            Type="SecureString",
        )
        self.cold()

    def put_route(self, pattern: str, action: str, target: str = "") -> None:
        boto3.client("dynamodb", region_name=REGION).put_item(
            TableName=f"mailroom-{self.stage}-routes",
            Item={
                "PK": {"S": f"ROUTE#{pattern}"},
                "SK": {"S": "RULE#v1"},
                "action": {"S": action},
                "target": {"S": target},
                "enabled": {"BOOL": True},
                "description": {"S": "crash harness"},
            },
        )

    def cold(self) -> None:
        """A new container: nothing cached from the one that died (but botocore's loaded
        service models, which only cost time to load again)."""
        reset_clients()
        reset_secrets()
        batch.queue_url_for_arn.cache_clear()
        batch.dead_letter_queue_url.cache_clear()
        dispatch.queue_url.cache_clear()

    # --- running like Lambda ----------------------------------------------------------

    def invoke(self, name: str, *, crash_at: tuple[int, When] | None = None) -> bool:
        """One invocation on up to 10 visible messages of ``name``; whether any were there.

        Armed (``crash_at`` given, or recording), the invocation's outbound calls are the
        boundaries. A crash leaves the batch in flight, as a dead function does."""
        queue = self.queues[name]
        answer = self.sqs.receive_message(
            QueueUrl=queue.url,
            MaxNumberOfMessages=10,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        records = [
            lambda_rules.to_lambda_record(m, queue.arn, REGION) for m in answer.get("Messages", [])
        ]
        if not records:
            return False
        self.in_flight.setdefault(name, []).extend(r["receiptHandle"] for r in records)
        handler = importlib.import_module(HANDLERS[name]).handle_batch
        result: Any = None
        error: BaseException | None = None
        if crash_at is not None:
            self.cold()  # a fresh container: every call it makes is a boundary
            self.boundaries.arm(crash_at)
        try:
            result = handler({"Records": records})
        except Crash:
            self.cold()
            return True
        except Exception as err:
            error = err
        finally:
            self.boundaries.disarm()
        lambda_rules.apply(
            self.sqs, queue.url, records, result, error, report_batch_item_failures=True
        )
        return True

    def call_http(self, entry: HttpEntry, *, crash_at: tuple[int, When] | None) -> None:
        """The request, then the caller's retries while the answer is a 5xx or none."""
        if crash_at is not None:
            self.cold()
            self.boundaries.arm(crash_at)
        reply: HttpReply | None = None
        try:
            reply = entry.call()
        except Crash:
            self.cold()
        finally:
            self.boundaries.disarm()
        for _ in range(CALLER_RETRIES):
            if reply is not None and reply.status < 500:
                return
            reply = entry.call()

    def call_scheduled(self, entry: ScheduledEntry, *, crash_at: tuple[int, When]) -> None:
        """The invocation, then Lambda's retries while it dies."""
        self.cold()
        self.boundaries.arm(crash_at)
        try:
            entry.call()
            return
        except Crash:
            self.cold()
        finally:
            self.boundaries.disarm()
        for _ in range(ASYNC_RETRIES):
            try:
                entry.call()
                return
            except Exception:  # noqa: S112 - a failed invocation is what Lambda retries
                continue

    def settle(self) -> bool:
        """Run every queue until nothing is left to do, as time passing would; whether it
        came to rest (nothing is sent with a delay, so an empty receive means empty)."""
        for _ in range(MAX_ROUNDS):
            self.expire_locks()
            self.make_visible()
            worked = False
            for name in HANDLERS:
                if name in self.queues and self.invoke(name):
                    worked = True
            if not worked:
                return True
        return False

    def make_visible(self) -> None:
        """The visibility timeout of every message left in flight ends."""
        for name, handles in self.in_flight.items():
            for handle in handles:
                with contextlib.suppress(self.sqs.exceptions.ClientError):  # deleted meanwhile
                    self.sqs.change_message_visibility(
                        QueueUrl=self.queues[name].url, ReceiptHandle=handle, VisibilityTimeout=0
                    )
        self.in_flight.clear()

    def expire_locks(self) -> None:
        """Idempotency locks outlive the function, not the visibility timeout: by the time a
        crashed batch is visible again, its locks have expired."""
        dynamodb = self.dynamodb
        found = dynamodb.scan(
            TableName=f"mailroom-{self.stage}-state",
            FilterExpression="attribute_exists(lock_expires_at)",
        )
        for item in found.get("Items", []):
            dynamodb.update_item(
                TableName=f"mailroom-{self.stage}-state",
                Key={"PK": item["PK"], "SK": item["SK"]},
                UpdateExpression="SET lock_expires_at = :past",
                ExpressionAttributeValues={":past": {"N": "0"}},
            )

    # --- judging ----------------------------------------------------------------------

    def dead_letters(self) -> tuple[int, int]:
        """Dead letters in every DLQ (with and without a reason), removed once counted, so
        the next run starts from empty DLQs."""
        total = reasonless = 0
        if not self.dlq_urls:
            every = self.sqs.list_queues(QueueNamePrefix=f"mailroom-{self.stage}")["QueueUrls"]
            self.dlq_urls = [url for url in every if "dlq" in url]
        for url in self.dlq_urls:
            while True:
                got = self.sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
                ).get("Messages", [])
                if not got:
                    break
                for message in got:
                    total += 1
                    if "mailroom_reason" not in (message.get("MessageAttributes") or {}):
                        reasonless += 1
                    self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return total, reasonless

    def stranded(self) -> int:
        """Messages still in a source queue after quiescence (nobody will handle them)."""
        left = 0
        for queue in self.queues.values():
            attributes = self.sqs.get_queue_attributes(
                QueueUrl=queue.url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            )["Attributes"]
            left += sum(int(value) for value in attributes.values())
        return left

    def standin(self, name: str, path: str) -> Any:
        return requests.get(f"{self.urls[name]}{path}", timeout=10).json()

    def standin_post(self, name: str, path: str, body: dict[str, Any]) -> None:
        requests.post(f"{self.urls[name]}{path}", json=body, timeout=10).raise_for_status()


def crash_run(world: World, pipeline: Pipeline, crash_at: tuple[int, When] | None) -> Verdict:
    """One message through ``pipeline`` with a crash at ``crash_at`` (none: a discovery run
    that records the boundaries), then everything AWS and the callers do next."""
    run_id = uuid.uuid4().hex[:12]
    before = pipeline.effects(world, run_id)
    entry = pipeline.start(world, run_id)
    if isinstance(entry, QueueEntry):
        world.invoke(entry.queue, crash_at=crash_at or (-1, "before"))
    elif isinstance(entry, HttpEntry):
        world.call_http(entry, crash_at=crash_at or (-1, "before"))
    else:
        world.call_scheduled(entry, crash_at=crash_at or (-1, "before"))
    world.cold()
    rested = world.settle()
    after = pipeline.effects(world, run_id)
    dead, reasonless = world.dead_letters()
    label = "discovery" if crash_at is None else f"{crash_at[1]} #{crash_at[0]}"
    if crash_at is not None and crash_at[0] < len(world.boundaries.calls):
        label = f"{crash_at[1]} #{crash_at[0]} {world.boundaries.calls[crash_at[0]]}"
    return Verdict(
        boundary=label,
        effects={name: after[name] - before.get(name, 0) for name in after},
        dead_letters=dead,
        reasonless=reasonless,
        stranded=0 if rested else world.stranded(),
    )


def crash_everywhere(world: World, pipeline: Pipeline, *, every: bool = True) -> Report:
    """Discover the pipeline's boundaries, then crash at each (see ``crash_points``)."""
    report = Report(pipeline.name)
    discovery = crash_run(world, pipeline, None)
    report.calls = list(world.boundaries.calls)
    if not discovery.ok or discovery.total != 1:
        raise AssertionError(f"{pipeline.name}: the run without a crash failed: {discovery}")
    for point in crash_points(report.calls, every=every):
        report.verdicts.append(crash_run(world, pipeline, point))
    return report


def _webhook_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """The inbound webhook as API Gateway serves it, for the probe to post to (another
    function: its calls are not the probe's boundaries)."""
    from chalicelib.handlers import webhooks

    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    headers = {
        key[5:].replace("_", "-").title(): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    headers["Content-Type"] = str(environ.get("CONTENT_TYPE", "application/json"))
    reply = webhooks.postmark_inbound(headers, body)
    start_response(f"{reply.status} -", [("Content-Type", "application/json")])
    return [json.dumps(reply.body).encode()]


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.pop("MAILROOM_AWS_ENDPOINT_URL", None)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        reset_clients()
        reset_secrets()


@contextlib.contextmanager
def world(stage: str = "crash") -> Iterator[World]:
    """A running ``World`` in a temporary state directory."""
    with (
        tempfile.TemporaryDirectory(prefix="mailroom-crash-") as tmp,
        World(stage, Path(tmp)).running() as running,
    ):
        yield running
