"""moto's SQS as the local stack needs it: FIFO groups kept in order, and receives at a pace.

moto forgets a received message only when a later receive meets it visible again, and then
re-derives the groups in flight from the messages it has not met yet; so after a retry the
*last* held-back message of a group is handed out first (A7 before A2-A6). Real SQS returns no
message of a group while one of its messages is in flight, and a group's visible messages in
order. Patched here: a group is in flight only while one of its received messages is still
invisible, timed-out receipts are forgotten before a receive starts, and receives on one FIFO
queue take turns (several pollers must not split a group between two batches) without holding
the turn through a long poll. For pace: a receive no longer rebuilds every queue attribute per
message (quadratic in the queue's length), and visibility checks read ``time.time()`` rather
than building a datetime per message per scan.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from moto.sqs import models

_MARK = "_mailroom_fifo_patch"
LONG_POLL_STEP_SECONDS = 0.25


def install() -> Callable[[], None]:
    """Patch moto's SQS backend in this process; returns a function that undoes it."""
    if getattr(models.SQSBackend, _MARK, False):
        return lambda: None
    original_groups = models.Queue.pending_message_groups
    original_receive = models.SQSBackend.receive_message
    original_retention = models.SQSBackend.is_message_valid_based_on_retention_period
    original_add = models.Queue.add_message
    original_delete = models.SQSBackend.delete_message
    original_visibility = models.SQSBackend.change_message_visibility
    original_visible, original_delayed = models.Message.visible, models.Message.delayed
    guard = threading.Lock()
    locks: dict[tuple[int, str], threading.Lock] = {}
    changed = threading.Condition()  # a message was added, deleted or made visible

    def notifying(original: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            with changed:
                changed.notify_all()
            return result

        return call

    def retention_ok(backend: Any, queue_name: str, message: Any) -> bool:
        # moto builds every queue attribute (three scans of the queue) per message received
        # only to read this one; that made a receive quadratic in the queue's length.
        retention = int(backend.get_queue(queue_name).message_retention_period)
        return bool(retention + message.sent_timestamp / 1000 > time.time())

    def pending_message_groups(queue: Any) -> set[str]:
        return {
            message.group_id
            for message in list(queue.pending_messages)
            if message.group_id is not None and not message.visible
        }

    def receive_message(
        backend: Any,
        queue_name: str,
        count: int,
        wait_seconds_timeout: int,
        visibility_timeout: int,
        message_attribute_names: list[str] | None = None,
    ) -> Any:
        queue = backend.get_queue(queue_name)
        if not queue.fifo_queue:
            return original_receive(
                backend,
                queue_name,
                count,
                wait_seconds_timeout,
                visibility_timeout,
                message_attribute_names,
            )
        with guard:
            lock = locks.setdefault((id(backend), queue_name), threading.Lock())
        deadline = time.monotonic() + (wait_seconds_timeout or 0)
        while True:
            # Each try is instant and holds the queue's turn only while it picks messages;
            # the long poll waits outside it, so a poller whose groups are all in flight
            # does not hold up one that could take a newly freed group.
            with lock:
                for message in [m for m in queue.pending_messages if m.visible]:
                    queue.pending_messages.discard(message)  # its consumer timed out
                found = original_receive(
                    backend, queue_name, count, 0, visibility_timeout, message_attribute_names
                )
            left = deadline - time.monotonic()
            if found or left <= 0:
                return found
            with changed:  # woken by a change; the step bounds the wait for timeouts running out
                changed.wait(min(left, LONG_POLL_STEP_SECONDS))

    models.Queue.pending_message_groups = property(pending_message_groups)  # type: ignore[assignment]
    # moto's clock (a datetime built per call) made scanning a queue of a few hundred
    # messages cost more than the handlers; the same comparison on time.time().
    models.Message.visible = property(lambda m: time.time() * 1000 > m.visible_at)  # type: ignore[assignment]
    models.Message.delayed = property(lambda m: time.time() * 1000 < m.delayed_until)  # type: ignore[assignment]
    models.SQSBackend.receive_message = receive_message  # type: ignore[method-assign]
    models.SQSBackend.is_message_valid_based_on_retention_period = retention_ok  # type: ignore[method-assign]
    models.Queue.add_message = notifying(original_add)  # type: ignore[method-assign]
    models.SQSBackend.delete_message = notifying(original_delete)  # type: ignore[method-assign]
    models.SQSBackend.change_message_visibility = notifying(original_visibility)  # type: ignore[method-assign]
    setattr(models.SQSBackend, _MARK, True)

    def undo() -> None:
        models.Queue.pending_message_groups = original_groups  # type: ignore[method-assign]
        models.SQSBackend.receive_message = original_receive  # type: ignore[method-assign]
        models.Message.visible, models.Message.delayed = original_visible, original_delayed  # type: ignore[method-assign]
        models.SQSBackend.is_message_valid_based_on_retention_period = original_retention  # type: ignore[method-assign]
        models.Queue.add_message = original_add  # type: ignore[method-assign]
        models.SQSBackend.delete_message = original_delete  # type: ignore[method-assign]
        models.SQSBackend.change_message_visibility = original_visibility  # type: ignore[method-assign]
        setattr(models.SQSBackend, _MARK, False)

    return undo
