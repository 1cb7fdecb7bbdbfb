"""The local stack's principals: each pump thread acts as its function, and a session signs
with the current function's keys (the administrator's where no function acts)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest

from chalicelib.platform import aws as aws_clients
from mailroom_local import iam
from mailroom_local.pump import Pump
from tests.conftest import REGION, Stage

KEYS = {
    "inbound_bridge": {"aws_access_key_id": "AKIABRIDGE", "aws_secret_access_key": "s1"},
    "bouncer": {"aws_access_key_id": "AKIABOUNCER", "aws_secret_access_key": "s2"},
}


@pytest.fixture
def installed(tmp_path: Path) -> Iterator[Path]:
    calls = tmp_path / "calls.jsonl"
    iam.install(KEYS, calls, region=REGION)
    try:
        yield calls
    finally:
        iam.uninstall()


def _access_key(session: Any) -> str:
    return str(session.get_credentials().get_frozen_credentials().access_key)


def test_a_session_signs_as_the_function_acting_on_this_thread(installed: Path) -> None:
    session = aws_clients.aws_session()
    seen: dict[str, str] = {}

    def act(function: str) -> None:
        with iam.acting_as(function):
            seen[function] = _access_key(session)

    threads = [threading.Thread(target=act, args=(f,)) for f in KEYS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert seen == {"inbound_bridge": "AKIABRIDGE", "bouncer": "AKIABOUNCER"}
    assert _access_key(session) == "local"  # no function acts: the stack itself, as admin


def test_calls_are_recorded_with_the_function_that_made_them(installed: Path, aws: Stage) -> None:
    del aws  # moto in-process: the call itself need not succeed to be recorded
    client = boto3.session.Session()
    iam.prepare(client)
    sqs = client.client("sqs", region_name=REGION)
    # Only the record matters here, not whether the call succeeds.
    with iam.acting_as("bouncer"), contextlib.suppress(Exception):
        sqs.get_queue_url(QueueName="mailroom-test-bouncer")

    [call] = iam.read_calls(installed)
    assert call["function"] == "bouncer"
    assert call["action"] == "sqs:GetQueueUrl"
    assert call["resource"].endswith(":mailroom-test-bouncer")


def test_each_poller_thread_acts_as_its_function(aws: Stage) -> None:
    import app

    acting: set[tuple[str, str]] = set()

    @contextmanager
    def principal(function: str) -> Iterator[None]:
        acting.add((threading.current_thread().name, function))
        yield

    pump = Pump(
        app,
        boto3.client("sqs", region_name=REGION),
        region=REGION,
        report_batch_item_failures=True,
        pollers=1,
        principal=principal,
    )
    try:
        started = pump.start()
    finally:
        pump.stop()

    assert acting == {(f"pump-{name}-0", name) for name in started}
