"""Outbound sender: SQS FIFO records of outbound requests → Postmark, exactly once, in one call.

Each record is prepared on its own (parse, claim the correlation id, drop suppressed
recipients, look for an earlier send), then every prepared record goes to Postmark in one
``/email/batch`` call and each element's answer settles its record:

* accepted: the claim is completed with Postmark's MessageID, the delivery log says ``sent``;
* ErrorCode 406: the named recipients join the suppression list and the message goes out
  again, in the same invocation, to whoever is left; nobody left → outcome ``suppressed``;
* transient (429, 5xx, ErrorCode 100, network): retried by SQS; permanent: dead-lettered.

Postmark has no idempotency key. A correlation id whose earlier attempt may have reached
Postmark (its key is uncertain: a call that timed out or answered 500, a lock that expired
under a crash, a send whose completion was not written) is first looked up by its
correlation id in Postmark's outbound search, and not sent again if found; this holds for a
redelivery, a redriven copy with a new SQS message id and a re-submission in another group
alike, because the key, not the message, remembers. A failed search leaves the key
uncertain and the record is retried. Only a failure that proves Postmark did not take the
message (a refused connection, 429, 503, a per-message error) releases the key.

Order: a record held back by a transient failure before the call holds back the rest of its
group; within one call the
messages go in queue order, and a per-message transient failure there retries only that
message (the others of its group were already accepted).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chalicelib.handlers.services import Services, services
from chalicelib.mail.delivery_log import DeliveryStatus
from chalicelib.mail.outbound import OutboundEmail, parse_outbound
from chalicelib.mail.suppression import normalise
from chalicelib.platform import claimcheck
from chalicelib.platform.aws import aws_client, put_items
from chalicelib.platform.batch import PENDING, ActResult, LogContext, SqsRecord, process_batch
from chalicelib.platform.envelope import unwrap
from chalicelib.platform.errors import (
    EffectNotRecorded,
    PoisonMessageError,
    ProofNotYetPossible,
    TransientError,
    error_class,
    is_transient,
)
from chalicelib.platform.errors import reason_of as reason_for
from chalicelib.platform.idempotency import Claim, KeyState
from chalicelib.platform.logging import log_event
from chalicelib.platform.payload import PayloadRejected
from chalicelib.platform.secrets import POSTMARK_SERVER_TOKEN, get_secrets
from chalicelib.providers.postmark.client import InactiveRecipients, PostmarkClient

EVENT_TYPE = "outbound_sender"
# A 406 names inactive recipients; the message is re-sent to the rest at most this often
# within one invocation before SQS takes over.
SEND_PASSES = 3


def handle_batch(event: Mapping[str, Any], remaining_time_ms: Any = None) -> dict[str, Any]:
    """Lambda entry point for the outbound sender queue."""
    send = _Batch(services())
    send.prefetch(event)
    return process_batch(
        event,
        send.prepare,
        event_type=EVENT_TYPE,
        remaining_time_ms=remaining_time_ms,
        act=send.send,
    )


def _wait_for_search(claim: Claim, delay_seconds: int) -> None:
    """Postmark's outbound search can lag a message it has just taken: searching right after
    an attempt that may have sent could miss it and send again. Wait until the previous
    attempt is ``delay_seconds`` old (not counted as an attempt; SQS brings it back)."""
    previous = claim.previous_attempt_at or claim.first_attempt_at
    if time.time() - previous < delay_seconds:
        raise ProofNotYetPossible("previous attempt too recent for Postmark's search; waiting")


class InvalidRequest(PoisonMessageError):
    """The record is not a valid outbound request; carries its correlation id if it has one."""

    def __init__(self, reason: str, correlation_id: str | None) -> None:
        super().__init__(reason)
        self.correlation_id = correlation_id


def parse(record: SqsRecord) -> OutboundEmail:
    """The outbound request in ``record``, by the API's own parser; malformed is poison."""
    message, _ = unwrap(record.body)
    payload = claimcheck.check_out(message)
    try:
        return parse_outbound(payload)
    except PayloadRejected as err:
        try:
            named = json.loads(payload).get("correlation_id")
        except (ValueError, AttributeError):
            named = None
        raise InvalidRequest(
            err.reason, named if isinstance(named, str) and named else None
        ) from err


@dataclass
class _Prepared:
    email: OutboundEmail
    claim: Claim
    blocked: set[str] = field(default_factory=set)  # normalised recipients not to send to

    def nobody_left(self) -> bool:
        return all(normalise(a) in self.blocked for a in self.email.to)


class _Batch:
    """One invocation: records prepared one by one, then sent together."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.parsed: dict[str, OutboundEmail] = {}
        self.checked: set[str] = set()  # addresses looked up in the suppression list...
        self.blocked: set[str] = set()  # ...and those of them that are suppressed
        self.prepared: dict[str, _Prepared] = {}
        self._postmark: PostmarkClient | None = None

    def prefetch(self, event: Mapping[str, Any]) -> None:
        """Parse every record and look up all their recipients with one BatchGetItem.

        Only a speed-up: a record that fails here is parsed (and fails) again in ``prepare``,
        and if the lookup fails each record looks its own recipients up.
        """
        for raw in event.get("Records") or []:
            record = SqsRecord.from_lambda(raw)
            try:
                self.parsed[record.message_id] = parse(record)
            except Exception:  # noqa: S112 - prepare reports it, with the batch rules
                continue
        wanted = [a for email in self.parsed.values() for a in email.recipients]
        try:
            self.blocked = self.svc.suppressions.suppressed(wanted) if wanted else set()
        except Exception as err:
            log_event(
                "suppression prefetch failed", event_type=EVENT_TYPE, error_class=error_class(err)
            )
            return
        self.checked = {normalise(a) for a in wanted}

    def _blocked(self, email: OutboundEmail) -> set[str]:
        recipients = {normalise(a) for a in email.recipients}
        if recipients <= self.checked:
            return recipients & self.blocked
        return self.svc.suppressions.suppressed(email.recipients)

    def postmark(self) -> PostmarkClient:
        if self._postmark is None:
            settings = self.svc.settings
            self._postmark = PostmarkClient(
                get_secrets().current(POSTMARK_SERVER_TOKEN),
                session=self.svc.session,
                base_url=settings.postmark_api_url,
                timeout=settings.http_timeout_seconds,
            )
        return self._postmark

    def prepare(self, record: SqsRecord, ctx: LogContext) -> str:
        try:
            email = self.parsed.get(record.message_id) or parse(record)
        except InvalidRequest as err:
            if err.correlation_id:  # so "what happened to X" has an answer
                ctx.correlation_id = err.correlation_id[:128]
                self.svc.delivery_log.record_quietly(
                    err.correlation_id[:128], DeliveryStatus.DEAD_LETTERED, reason=err.reason
                )
            raise
        ctx.correlation_id = email.correlation_id
        claim = self.svc.idempotency.claim(f"outbound:{email.correlation_id}")
        if claim.state is KeyState.COMPLETED:
            return "duplicate"
        ready = _Prepared(email, claim)
        try:
            ready.blocked = self._blocked(email)
            if ready.nobody_left():
                return self._suppressed(ready)
            if claim.state is KeyState.UNCERTAIN:
                _wait_for_search(claim, self.svc.settings.proof_delay_seconds)
                # Exact: Postmark filters on the metadata value we sent with the message.
                found = self.postmark().search_outbound({"correlation_id": email.correlation_id})
                if found:
                    log_event("earlier send found by correlation id", event_type=EVENT_TYPE)
                    [outcome] = self._sent([(ready, str(found[0].get("MessageID", "")))], "search")
                    if isinstance(outcome, BaseException):
                        raise outcome
                    return outcome
                log_event("earlier attempt did not send; sending", event_type=EVENT_TYPE)
        except Exception as err:
            self.svc.idempotency.settle_failure(claim, err)
            raise
        self.prepared[record.message_id] = ready
        return PENDING

    def send(self, records: list[SqsRecord]) -> ActResult:
        """One ``/email/batch`` call for ``records`` (more only after a 406)."""
        answers: ActResult = {}
        accepted: dict[str, str] = {}  # SQS message id → Postmark MessageID
        todo = [r.message_id for r in records]
        try:
            for _ in range(SEND_PASSES):
                if not todo:
                    break
                todo = self._send_once(todo, answers, accepted)
            if todo:
                raise TransientError("recipients kept turning inactive; retrying")
        except Exception as err:
            for message_id in todo:
                if message_id not in answers and message_id not in accepted:
                    answers[message_id] = self._failed(self.prepared[message_id], err)
        sent = list(accepted.items())
        outcomes = self._sent([(self.prepared[m], pm_id) for m, pm_id in sent], "send")
        answers.update({m: outcome for (m, _), outcome in zip(sent, outcomes, strict=True)})
        return answers

    def _send_once(
        self, todo: list[str], answers: ActResult, accepted: dict[str, str]
    ) -> list[str]:
        """Send ``todo`` and sort the answers; the ids to send again (fewer recipients)."""
        ready = [self.prepared[m] for m in todo]
        results = self.postmark().send_batch([p.email.postmark_message(p.blocked) for p in ready])
        # Every accepted message first: nothing that fails below may touch their claims.
        for message_id, result in zip(todo, results, strict=True):
            if result.error is None:
                accepted[message_id] = result.message_id or ""
        again: list[str] = []
        for message_id, prepared, result in zip(todo, ready, results, strict=True):
            if result.error is None:
                continue
            try:
                if isinstance(result.error, InactiveRecipients) and self._suppress(
                    prepared, result.error
                ):
                    if prepared.nobody_left():
                        answers[message_id] = self._suppressed(prepared)
                    else:
                        again.append(message_id)
                    continue
                answers[message_id] = self._failed(prepared, result.error)
            except Exception as err:
                # Postmark refused this message, so nothing was sent: a plain retry is safe.
                log_event(
                    "refusal not settled", event_type=EVENT_TYPE, error_class=error_class(err)
                )
                answers[message_id] = self._failed(
                    prepared, TransientError("refused recipients could not be recorded")
                )
        return again

    def _suppress(self, prepared: _Prepared, err: InactiveRecipients) -> bool:
        """Suppress the inactive recipients Postmark named; False if it named none of ours."""
        ours = {normalise(a) for a in prepared.email.recipients}
        named = set(err.addresses) & ours - prepared.blocked
        for address in sorted(named):
            self.svc.suppressions.add(address, reason="inactive", source="postmark")
        prepared.blocked |= named
        return bool(named)

    def _sent(self, sent: list[tuple[_Prepared, str]], found_by: str) -> list[str | BaseException]:
        """Complete the claims of sent messages and log them, in one batch write.

        A claim left uncompleted is marked uncertain (or its lock expires): the retry
        searches Postmark first, so a failed write here never becomes a second send.
        """
        claims = [
            self.svc.idempotency.completed_item(prepared.claim, {"message_id": message_id})
            for prepared, message_id in sent
        ]
        lines = [
            self.svc.delivery_log.item(
                prepared.email.correlation_id,
                DeliveryStatus.SENT,
                details={
                    "postmark_message_id": message_id,
                    "found_by": found_by,
                    "recipients": str(len(prepared.email.recipients) - len(prepared.blocked)),
                },
            )
            for prepared, message_id in sent
        ]
        try:
            left = put_items(aws_client("dynamodb"), self.svc.settings.state_table, claims + lines)
        except Exception as err:
            log_event(
                "claims not completed after send",
                event_type=EVENT_TYPE,
                error_class=error_class(err),
            )
            left = claims
        unwritten = {item["PK"]["S"] for item in left}
        outcome = "sent" if found_by == "send" else "already_sent"
        answers: list[str | BaseException] = []
        for (prepared, _), claim in zip(sent, claims, strict=True):
            if claim["PK"]["S"] in unwritten:
                failure = EffectNotRecorded("sent, but the idempotency record was not completed")
                self.svc.idempotency.settle_failure(prepared.claim, failure)
                answers.append(failure)
            else:
                answers.append(outcome)
        return answers

    def _suppressed(self, prepared: _Prepared) -> str:
        self.svc.idempotency.complete(prepared.claim.key, {"outcome": "suppressed"})
        self.svc.delivery_log.record_quietly(
            prepared.email.correlation_id,
            DeliveryStatus.SUPPRESSED,
            recipients=", ".join(sorted(prepared.blocked)),
        )
        return "suppressed"

    def _failed(self, prepared: _Prepared, err: BaseException) -> BaseException:
        self.svc.idempotency.settle_failure(prepared.claim, err)
        if not is_transient(err):
            self.svc.delivery_log.record_quietly(
                prepared.email.correlation_id, DeliveryStatus.DEAD_LETTERED, reason=reason_for(err)
            )
        return err
