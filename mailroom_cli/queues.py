"""Reading queues without consuming them, and the in-process DLQ mover.

``held`` receives messages and always gives them back (ChangeMessageVisibility 0) when the
block ends, so a peek leaves no FIFO group locked. ``redrive`` moves messages from a DLQ to
its source queue: same message group, a fresh deduplication id (a FIFO queue silently drops
a re-send of the same id within 5 minutes), the original attributes plus a redrive count,
and the DLQ copy deleted only once the send succeeded; each selected message's fate (moved,
failed with SQS's code, skipped behind its group's failure) is reported. Sends go in
SendMessageBatch calls sized to the rate (about five a second), so the pace holds where one
call is slow. SQS's
own StartMessageMoveTask cannot filter, and the embedded AWS of the local stack lacks it.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from chalicelib.platform.batch import DLQ_ATTRIBUTE_PREFIX
from mailroom_cli.deadletters import REDRIVE_COUNT, DeadLetter

# Long enough to hold what a command has received while it works on it.
HOLD_SECONDS = 300


def counts(sqs: Any, url: str) -> dict[str, int]:
    """Visible, in-flight and delayed messages (SQS's approximate counts)."""
    names = {
        "visible": "ApproximateNumberOfMessages",
        "in_flight": "ApproximateNumberOfMessagesNotVisible",
        "delayed": "ApproximateNumberOfMessagesDelayed",
    }
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(names.values()))[
        "Attributes"
    ]
    return {key: int(attributes.get(name, "0")) for key, name in names.items()}


def receive(sqs: Any, url: str, *, limit: int, wait_seconds: int) -> list[dict[str, Any]]:
    """One ReceiveMessage of up to ``limit`` (≤ 10) messages, held for ``HOLD_SECONDS``."""
    return list(
        sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=max(1, min(limit, 10)),
            VisibilityTimeout=HOLD_SECONDS,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
    )


def release(sqs: Any, url: str, handles: list[str]) -> None:
    """Make held messages visible again at once."""
    for start in range(0, len(handles), 10):
        chunk = handles[start : start + 10]
        with contextlib.suppress(Exception):  # deleted meanwhile, or expired: visible anyway
            sqs.change_message_visibility_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
                    for i, h in enumerate(chunk)
                ],
            )


@contextlib.contextmanager
def held(
    sqs: Any, url: str, *, limit: int, wait_seconds: int = 1
) -> Iterator[list[dict[str, Any]]]:
    """Up to ``limit`` messages, received and given back when the block ends.

    A FIFO queue returns nothing more of a group while one of its messages is held, so this
    sees at most the first ten messages of each group. Short polls first; one long poll only
    while SQS still counts visible messages (a short poll samples only some servers)."""
    found: list[dict[str, Any]] = []
    try:
        while len(found) < limit:
            batch = receive(sqs, url, limit=limit - len(found), wait_seconds=0)
            if not batch and wait_seconds and counts(sqs, url)["visible"]:
                batch = receive(sqs, url, limit=limit - len(found), wait_seconds=wait_seconds)
            if not batch:
                break
            found.extend(batch)
        yield found
    finally:
        release(sqs, url, [m["ReceiptHandle"] for m in found])


def redriven_attributes(letter: DeadLetter) -> dict[str, dict[str, str]]:
    """The original attributes, without our reason attributes, plus the redrive count."""
    kept = {
        name: value
        for name, value in letter.raw_attributes.items()
        if not name.startswith(DLQ_ATTRIBUTE_PREFIX)
    }
    kept[REDRIVE_COUNT] = {"DataType": "Number", "StringValue": str(letter.redrive_count + 1)}
    return kept


@dataclass
class Pacer:
    """Spaces sends ``1/rate`` seconds apart; ``achieved`` is sends over elapsed time."""

    rate: float | None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    started: float | None = None
    sent: int = 0

    def wait(self) -> None:
        now = self.clock()
        if self.started is None:
            self.started = now
        if self.rate:
            due = self.started + self.sent / self.rate
            if due > now:
                self.sleep(due - now)

    def done(self, count: int = 1) -> None:
        self.sent += count

    def finish(self) -> float | None:
        """The achieved rate, after waiting out the last message's slot."""
        if self.started is None or self.sent == 0:
            return None
        if self.rate:
            due = self.started + self.sent / self.rate
            now = self.clock()
            if due > now:
                self.sleep(due - now)
        elapsed = self.clock() - self.started
        return self.sent / elapsed if elapsed > 0 else None


MOVED, FAILED, SKIPPED = "moved", "failed", "skipped"
# SQS's answers that are about the request, not one entry: the queue is not taking calls.
THROTTLED = {"RequestThrottled", "ThrottlingException", "KmsThrottled"}


@dataclass(frozen=True)
class Fate:
    """What became of one selected dead letter: moved; failed, with SQS's code and message;
    or skipped (left in the DLQ: an earlier message of its group failed, or the move stopped)."""

    message_id: str
    group_id: str | None
    fate: str
    code: str | None = None
    detail: str | None = None

    def as_row(self) -> dict[str, str | None]:
        return {
            "id": self.message_id,
            "group": self.group_id,
            "fate": self.fate,
            "code": self.code,
            "detail": self.detail,
        }


@dataclass
class MoveResult:
    moved: list[DeadLetter] = field(default_factory=list)
    skipped: int = 0  # not selected by the filters (or beyond --max)
    achieved_rate: float | None = None
    error: str | None = None
    left_in_both: list[str] = field(default_factory=list)  # sent, but the DLQ delete failed
    fates: list[Fate] = field(default_factory=list)  # every selected letter, in send order

    @property
    def not_moved(self) -> list[Fate]:
        return [fate for fate in self.fates if fate.fate != MOVED]


def redrive(
    sqs: Any,
    dlq_url: str,
    source_url: str,
    *,
    parse: Callable[[dict[str, Any]], DeadLetter],
    select: Callable[[DeadLetter], bool],
    max_messages: int,
    pacer: Pacer,
    dry_run: bool = False,
    wait_seconds: int = 1,
    progress: Callable[[int], None] = lambda n: None,
) -> MoveResult:
    """Move the selected messages of ``dlq_url`` back to ``source_url``, in queue order.

    Each SendMessageBatch holds at most one message per group, so a later message of a group
    is sent only once its earlier one was accepted; a group stops at its first failure (the
    rest of it stays in the DLQ) and other groups go on. A call SQS refuses as a whole (not
    for one entry's sake) stops the move."""
    result = MoveResult()
    held_back: list[str] = []
    stopped: set[str] = set()  # FIFO groups whose earlier message failed
    fifo = source_url.endswith(".fifo")

    def leave(letter: DeadLetter, why: str) -> None:
        held_back.append(letter.receipt_handle)
        result.fates.append(Fate(letter.message_id, letter.group_id, SKIPPED, None, why))

    try:
        while len(result.moved) < max_messages and result.error is None:
            batch = receive(sqs, dlq_url, limit=10, wait_seconds=0)
            if not batch and wait_seconds and counts(sqs, dlq_url)["visible"]:
                batch = receive(sqs, dlq_url, limit=10, wait_seconds=wait_seconds)
            if not batch:
                break
            # A DLQ can hold a group out of order (the backstop moves whichever message
            # exhausts first): send each batch in the order its messages first arrived.
            parsed = sorted((parse(m) for m in batch), key=lambda letter: letter.arrival)
            pending: list[DeadLetter] = []
            for letter in parsed:
                wanted = len(result.moved) + len(pending) < max_messages and select(letter)
                if dry_run or not wanted:
                    held_back.append(letter.receipt_handle)
                    if wanted:
                        result.moved.append(letter)  # would be moved
                    else:
                        result.skipped += 1
                    continue
                pending.append(letter)
            size = chunk_size(pacer.rate)
            while pending and result.error is None:
                chunk: list[DeadLetter] = []
                later: list[DeadLetter] = []
                for letter in pending:
                    group = _group(letter) if fifo else None
                    if group is not None and group in stopped:
                        leave(letter, f"an earlier message of group {group} failed")
                    elif len(chunk) < size and (group is None or group not in map(_group, chunk)):
                        chunk.append(letter)
                    else:
                        later.append(letter)
                pending = later
                if not chunk:
                    continue
                pacer.wait()
                sent, failures, result.error = _send(sqs, source_url, chunk, fifo=fifo)
                pacer.done(len(sent))
                _delete(sqs, dlq_url, sent, result)
                progress(len(sent))
                for letter in chunk:
                    if letter.message_id in failures:
                        code, detail = failures[letter.message_id]
                        result.fates.append(
                            Fate(letter.message_id, letter.group_id, FAILED, code, detail)
                        )
                        held_back.append(letter.receipt_handle)
                        if fifo:
                            stopped.add(_group(letter))
                    elif any(letter.message_id == done.message_id for done in sent):
                        result.fates.append(Fate(letter.message_id, letter.group_id, MOVED))
            for letter in pending:
                leave(letter, "the redrive stopped")
    finally:
        release(sqs, dlq_url, held_back)
    result.achieved_rate = None if dry_run else pacer.finish()
    return result


def chunk_size(rate: float | None) -> int:
    """Messages per SendMessageBatch: about five calls a second, at most ten messages."""
    if not rate:
        return 10
    return max(1, min(10, round(rate / 5)))


def _group(letter: DeadLetter) -> str:
    return letter.group_id or "ungrouped"


def _entry(position: int, letter: DeadLetter, *, fifo: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "Id": str(position),
        "MessageBody": letter.body,
        "MessageAttributes": redriven_attributes(letter),
    }
    if fifo:
        entry["MessageGroupId"] = _group(letter)
        entry["MessageDeduplicationId"] = uuid.uuid4().hex
    return entry


def _refusal(err: Exception) -> tuple[str, str, bool]:
    """SQS's code and message for a refused call, and whether the request itself was at fault
    (a 4xx other than throttling: an entry SQS will not take, which another call would not
    change) rather than the queue or the connection."""
    response = getattr(err, "response", None)
    if not isinstance(response, dict):
        return type(err).__name__, str(err), False
    error = response.get("Error", {})
    code = str(error.get("Code", type(err).__name__))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, str(error.get("Message", "")), 400 <= status < 500 and code not in THROTTLED


Failures = dict[str, tuple[str, str]]  # message id -> (SQS's code, its message)


def _send(
    sqs: Any, url: str, chunk: list[DeadLetter], *, fifo: bool
) -> tuple[list[DeadLetter], Failures, str | None]:
    """Send ``chunk`` in one call: what SQS accepted, what it refused per entry, and why the
    move must stop (the call refused as a whole), if it must.

    SQS refuses a whole batch for one oversized or invalid entry, so a batch refused for the
    request's sake is sent again one message at a time: only the bad entry fails."""
    entries = [_entry(position, letter, fifo=fifo) for position, letter in enumerate(chunk)]
    try:
        answer = sqs.send_message_batch(QueueUrl=url, Entries=entries)
    except Exception as err:
        code, detail, request_fault = _refusal(err)
        if not request_fault:
            return [], {letter.message_id: (code, detail) for letter in chunk}, code
        return _send_one_by_one(sqs, url, chunk, entries)
    refused = {
        int(entry["Id"]): (str(entry.get("Code", "")), str(entry.get("Message", "")))
        for entry in answer.get("Failed", [])
    }
    accepted = {int(entry["Id"]) for entry in answer.get("Successful", [])}
    sent = [letter for position, letter in enumerate(chunk) if position in accepted]
    failures = {
        letter.message_id: refused.get(position, ("NotAccepted", "neither sent nor refused"))
        for position, letter in enumerate(chunk)
        if position not in accepted
    }
    return sent, failures, None


def _send_one_by_one(
    sqs: Any, url: str, chunk: list[DeadLetter], entries: list[dict[str, Any]]
) -> tuple[list[DeadLetter], Failures, str | None]:
    sent: list[DeadLetter] = []
    failures: Failures = {}
    for position, (letter, entry) in enumerate(zip(chunk, entries, strict=True)):
        params = {key: value for key, value in entry.items() if key != "Id"}
        try:
            sqs.send_message(QueueUrl=url, **params)
        except Exception as err:
            code, detail, request_fault = _refusal(err)
            failures[letter.message_id] = (code, detail)
            if not request_fault:
                failures.update({later.message_id: (code, detail) for later in chunk[position:]})
                return sent, failures, code
            continue
        sent.append(letter)
    return sent, failures, None


def _delete(sqs: Any, url: str, sent: list[DeadLetter], result: MoveResult) -> None:
    """Delete what was sent from the DLQ (only now: a failed send must leave it there)."""
    if not sent:
        return
    try:
        answer = sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "ReceiptHandle": m.receipt_handle} for i, m in enumerate(sent)],
        )
        failed = {int(entry["Id"]) for entry in answer.get("Failed", [])}
    except Exception:
        failed = set(range(len(sent)))
    result.left_in_both += [m.message_id for i, m in enumerate(sent) if i in failed]
    result.moved += sent
