"""Shared fixtures: a moto-backed stage with every resource mailroom uses, and a Lambda pump."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import pytest
from moto import mock_aws

from chalicelib.platform import batch
from chalicelib.platform.aws import reset_clients
from chalicelib.platform.secrets import reset_secrets
from mailroom_local import lambda_rules
from mailroom_local.provision import Queue, provision
from mailroom_local.stack import serve

STAGE = "test"
REGION = "us-east-1"
WEBHOOK_USER, WEBHOOK_PASSWORD = "postmark", "secret-pass"
FREESCOUT_URL = "https://freescout.test"
POSTMARK_URL = "https://postmark.test"
POSTMARK_TOKEN = "postmark-token"
SIGNING_SECRET = "signing-secret"
PREFIX = f"mailroom-{STAGE}"
# app.py names its queues from the stage at import time, before any fixture runs.
os.environ["MAILROOM_STAGE"] = STAGE


@cache
def _shared_loader(search_path_string: str | None = None) -> Any:
    return botocore.loaders.create_loader(search_path_string)


# Each test starts from a new boto3 Session, as a new Lambda container does, and a Session's
# own loader parses botocore's service models again: about 0.1 s of CPU for each service a
# test touches. The models are read-only data, so the Sessions of a test run share a loader.
botocore.session.create_loader = _shared_loader


E2E = "tests/e2e/"
# End-to-end modules that start what they need themselves (their own stack, moto or
# stand-ins), not the shared stack: they may run in any worker.
E2E_ON_THEIR_OWN = tuple(
    f"{E2E}{name}.py::"
    for name in ("test_stop", "test_standins", "test_iam_enforcement", "test_soak", "test_corpus")
)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under pytest-xdist, every end-to-end test on the shared local stack runs in one worker,
    in collection order: that stack's recorded calls are what the permission test judges
    last. The other tests spread over the workers one by one. (Grouping by path here: the
    ``xdist_group`` mark is not honoured by pytest-xdist 3.8 under pytest 9.)"""
    from xdist.scheduler import LoadScopeScheduling

    class EndToEndInOneWorker(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            shared = nodeid.startswith(E2E) and not nodeid.startswith(E2E_ON_THEIR_OWN)
            return E2E if shared else nodeid

    return EndToEndInOneWorker(config, log)


def serve_wsgi(app: Any) -> Iterator[str]:
    """Serve a WSGI app on a free loopback port for the duration of a fixture."""
    server = serve(app)
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def postmark_message(to: str, correlation_id: str = "c-1") -> dict[str, Any]:
    """A minimal Postmark message object carrying mailroom's correlation id."""
    return {
        "From": "app@example.com",
        "To": to,
        "Subject": "Hi",
        "TextBody": "Hello",
        "Metadata": {"correlation_id": correlation_id},
    }


def _reset() -> None:
    reset_clients()
    reset_secrets()
    batch.queue_url_for_arn.cache_clear()
    batch.dead_letter_queue_url.cache_clear()


@pytest.fixture(autouse=True)
def _safe_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "MAILROOM_STAGE": STAGE,
        # Tests retry at once; the wait for Postmark's search has its own test.
        "MAILROOM_PROOF_DELAY_SECONDS": "0",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MAILROOM_AWS_ENDPOINT_URL", raising=False)
    _reset()
    yield
    _reset()


@dataclass
class Stage:
    """The moto resources of one stage, and helpers to run queues like Lambda does."""

    topics: dict[str, str]
    queues: dict[str, Queue]
    routes_table: str = f"{PREFIX}-routes"
    state_table: str = f"{PREFIX}-state"
    bucket: str = ""
    in_flight: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def receive(self, queue_url: str, *, max_messages: int = 10) -> list[dict[str, Any]]:
        sqs = boto3.client("sqs", region_name=REGION)
        response = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=max_messages,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages", []))

    def drain(self, queue_url: str) -> list[dict[str, Any]]:
        """Every visible message, received (and left in flight)."""
        found: list[dict[str, Any]] = []
        while batch_ := self.receive(queue_url):
            found.extend(batch_)
        return found

    def lambda_event(self, name: str, *, max_messages: int = 10) -> dict[str, Any]:
        queue = self.queues[name]
        messages = self.receive(queue.url, max_messages=max_messages)
        return {"Records": [lambda_rules.to_lambda_record(m, queue.arn, REGION) for m in messages]}

    def run_lambda(
        self, name: str, handler: Any, *, report_batch_item_failures: bool = True
    ) -> tuple[dict[str, Any], Any, BaseException | None]:
        """One Lambda invocation on up to 10 messages, then Lambda's delete rules."""
        event = self.lambda_event(name)
        self.in_flight.setdefault(name, []).extend(event["Records"])
        result: Any = None
        error: BaseException | None = None
        try:
            result = handler(event)
        except Exception as exc:
            error = exc
        lambda_rules.apply(
            boto3.client("sqs", region_name=REGION),
            self.queues[name].url,
            event["Records"],
            result,
            error,
            report_batch_item_failures=report_batch_item_failures,
        )
        return event, result, error

    def make_visible(self, name: str) -> None:
        """End the visibility timeout of the last invocation's messages that are still queued."""
        sqs = boto3.client("sqs", region_name=REGION)
        for record in self.in_flight.pop(name, []):
            with contextlib.suppress(sqs.exceptions.ClientError):  # deleted meanwhile
                sqs.change_message_visibility(
                    QueueUrl=self.queues[name].url,
                    ReceiptHandle=record["receiptHandle"],
                    VisibilityTimeout=0,
                )

    def put_route(self, pattern: str, action: str, target: str = "", enabled: bool = True) -> None:
        boto3.client("dynamodb", region_name=REGION).put_item(
            TableName=self.routes_table,
            Item={
                "PK": {"S": f"ROUTE#{pattern}"},
                "SK": {"S": "RULE#v1"},
                "action": {"S": action},
                "target": {"S": target},
                "enabled": {"BOOL": enabled},
                "description": {"S": "test rule"},
            },
        )


@cache
def _admin_client(service: str) -> Any:
    """The provisioning client of ``service``, made once for the session: moto answers
    whichever client calls while a mock is active, and building one takes longer than the
    calls the provisioning makes with it."""
    return boto3.client(service, region_name=REGION)


@pytest.fixture
def aws(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stage]:
    """A whole stage in moto: topics, FIFO queues with DLQs, tables, bucket, secrets; the
    alarms, dashboard, log groups and metric filters too for a test marked ``observed``."""
    with mock_aws():
        resources = provision(
            _admin_client,
            STAGE,
            observed=request.node.get_closest_marker("observed") is not None,
            secrets={
                "postmark/webhook-basic-auth": f"{WEBHOOK_USER}:{WEBHOOK_PASSWORD}",
                "freescout/api-key": "freescout-key",
                "postmark/server-token": POSTMARK_TOKEN,
                "outbound/signing-secret": SIGNING_SECRET,
            },
        )
        monkeypatch.setenv("MAILROOM_INBOUND_TOPIC_ARN", resources.topics["inbound"])
        monkeypatch.setenv("MAILROOM_OUTBOUND_TOPIC_ARN", resources.topics["outbound"])
        monkeypatch.setenv("MAILROOM_POSTMARK_API_URL", POSTMARK_URL)
        monkeypatch.setenv("MAILROOM_FREESCOUT_URL", FREESCOUT_URL)
        monkeypatch.setenv("MAILROOM_MAIL_BUCKET", resources.bucket)
        _reset()
        yield Stage(topics=resources.topics, queues=resources.queues, bucket=resources.bucket)
