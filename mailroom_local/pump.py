"""The event-source pump: feeds SQS messages to the on_sqs_message handlers as Lambda does.

Handlers are found through the Chalice app object (``app.event_sources``), never a second
list. Each queue gets ``pollers`` threads (as Lambda runs several batches of a queue at
once) that long-poll, build a Lambda-shaped event, invoke the handler and apply Lambda's
delete rules (``lambda_rules``). Group order holds because SQS FIFO returns no message of a
group that still has one in flight; moto needs ``moto_sqs`` for that.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from mailroom_local import lambda_rules

FUNCTION_TIMEOUT_MS = 60_000
DEFAULT_POLLERS = 4


@dataclass
class FakeContext:
    """The parts of Lambda's context object that handlers read."""

    function_name: str
    invoked_function_arn: str
    deadline: float
    aws_request_id: str

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def pump_once(
    sqs: Any,
    queue_url: str,
    queue_arn: str,
    handler: Any,
    *,
    name: str,
    region: str,
    batch_size: int,
    report_batch_item_failures: bool,
    wait_seconds: int = 1,
    function_timeout_ms: int = FUNCTION_TIMEOUT_MS,
) -> int:
    """Receive one batch, invoke ``handler`` like Lambda, apply the delete rules; batch size."""
    messages = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=min(batch_size, 10),
        WaitTimeSeconds=wait_seconds,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    ).get("Messages", [])
    if not messages:
        return 0
    records = [lambda_rules.to_lambda_record(m, queue_arn, region) for m in messages]
    context = FakeContext(
        function_name=name,
        invoked_function_arn=f"arn:aws:lambda:{region}:123456789012:function:{name}",
        deadline=time.monotonic() + function_timeout_ms / 1000,
        aws_request_id=str(uuid.uuid4()),
    )
    result: Any = None
    error: BaseException | None = None
    try:
        result = handler({"Records": records}, context)
    except Exception as exc:
        error = exc
    lambda_rules.apply(
        sqs,
        queue_url,
        records,
        result,
        error,
        report_batch_item_failures=report_batch_item_failures,
    )
    return len(records)


class Pump:
    """``pollers`` polling threads per ``on_sqs_message`` handler of ``app_module``."""

    def __init__(
        self,
        app_module: Any,
        sqs: Any,
        *,
        region: str,
        report_batch_item_failures: bool,
        pollers: int = DEFAULT_POLLERS,
        function_timeout_ms: int = FUNCTION_TIMEOUT_MS,
        principal: Callable[[str], AbstractContextManager[Any]] | None = None,
    ) -> None:
        if pollers < 1:
            raise ValueError("a queue needs at least one poller")
        self._module = app_module
        self._sqs = sqs
        self._region = region
        self._flag = report_batch_item_failures
        self._pollers = pollers
        self._timeout_ms = function_timeout_ms
        # Lambda polls and invokes as the function's execution role: each poller thread
        # acts as its function (mailroom_local.iam.acting_as).
        self._principal = principal or (lambda _name: nullcontext())
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> list[str]:
        started = []
        for source in self._module.app.event_sources:
            if type(source).__name__ != "SQSEventConfig":
                continue
            url = self._sqs.get_queue_url(QueueName=source.queue)["QueueUrl"]
            arn = self._sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
            handler = getattr(self._module, source.name)
            for number in range(self._pollers):
                thread = threading.Thread(
                    target=self._loop,
                    args=(url, arn, handler, source.name, source.batch_size),
                    name=f"pump-{source.name}-{number}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)
            started.append(source.name)
        return started

    def _loop(self, url: str, arn: str, handler: Any, name: str, batch_size: int) -> None:
        with self._principal(name):
            self._poll(url, arn, handler, name, batch_size)

    def _poll(self, url: str, arn: str, handler: Any, name: str, batch_size: int) -> None:
        while not self._stop.is_set():
            try:
                pump_once(
                    self._sqs,
                    url,
                    arn,
                    handler,
                    name=name,
                    region=self._region,
                    batch_size=batch_size,
                    report_batch_item_failures=self._flag,
                    function_timeout_ms=self._timeout_ms,
                )
            except Exception as err:  # the pump must outlive a broken queue or handler
                if self._stop.is_set():
                    return  # the embedded AWS is stopping with us
                print(f"pump {name}: {type(err).__name__}: {err}", flush=True)
                self._stop.wait(1)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop polling; wait up to ``timeout`` in all for batches in flight (the threads are
        daemons: a batch cut short comes back after its visibility timeout, as in Lambda)."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
