"""Keeps moto's SQS FIFO message groups in order: a patch the local stack applies to moto 5.2.

moto forgets a received message only when a later receive meets it visible again, and then
re-derives the groups in flight from the messages it has not met yet; so after a retry the
*last* held-back message of a group is handed out first (A7 before A2-A6). Real SQS returns no
message of a group while one of its messages is in flight, and a group's visible messages in
order. Patched here: a group is in flight only while one of its received messages is still
invisible, timed-out receipts are forgotten before a receive starts, and receives on one FIFO
queue take turns (several pollers must not split a group between two batches).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from moto.sqs import models

_MARK = "_mailroom_fifo_patch"


def install() -> Callable[[], None]:
    """Patch moto's SQS backend in this process; returns a function that undoes it."""
    if getattr(models.SQSBackend, _MARK, False):
        return lambda: None
    original_groups = models.Queue.pending_message_groups
    original_receive = models.SQSBackend.receive_message
    guard = threading.Lock()
    locks: dict[tuple[int, str], threading.Lock] = {}

    def pending_message_groups(queue: Any) -> set[str]:
        return {
            message.group_id
            for message in list(queue.pending_messages)
            if message.group_id is not None and not message.visible
        }

    def receive_message(backend: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        queue = backend.get_queue(queue_name)
        if not queue.fifo_queue:
            return original_receive(backend, queue_name, *args, **kwargs)
        with guard:
            lock = locks.setdefault((id(backend), queue_name), threading.Lock())
        with lock:
            for message in [m for m in queue.pending_messages if m.visible]:
                queue.pending_messages.discard(message)  # its consumer timed out
            return original_receive(backend, queue_name, *args, **kwargs)

    models.Queue.pending_message_groups = property(pending_message_groups)  # type: ignore[assignment]
    models.SQSBackend.receive_message = receive_message  # type: ignore[method-assign]
    setattr(models.SQSBackend, _MARK, True)

    def undo() -> None:
        models.Queue.pending_message_groups = original_groups  # type: ignore[method-assign]
        models.SQSBackend.receive_message = original_receive  # type: ignore[method-assign]
        setattr(models.SQSBackend, _MARK, False)

    return undo
