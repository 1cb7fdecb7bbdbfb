"""Outbound sender: SQS FIFO records of outbound requests → Postmark or SES, exactly once.

Postmark messages of a batch go in one ``/email/batch`` call; SES messages one ``SendEmail``
each. Which provider a message takes is its stream's order and the shared provider switch
(``mail/failover``); see "Two providers" at the end.

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

Two providers: before an SES call the key records that SES was attempted. An uncertain key
that names SES is never sent again by anyone: it completes when SES's events (the feedback
handler's delivery log lines) show the message, and is dead-lettered with its reason after
the attempt limit otherwise. An uncertain key that does not name SES was Postmark's, and
moves (to SES, when the switch says so) only once Postmark's search proves it unsent; while
Postmark is down that search waits, without counting as an attempt. A run of outage errors
(``failover.outage``) opens the switch; one container at a time probes the provider that is
down and closes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chalicelib.handlers.outbound_failover import Failover
from chalicelib.handlers.outbound_records import (
    EVENT_TYPE,
    Prepared,
    record_failed,
    record_sent,
    record_suppressed,
)
from chalicelib.handlers.outbound_request import InvalidRequest, parse, wait_for_proof
from chalicelib.handlers.services import Services, services
from chalicelib.mail.delivery_log import DeliveryStatus
from chalicelib.mail.failover import choose
from chalicelib.mail.outbound import OutboundEmail
from chalicelib.mail.suppression import normalise
from chalicelib.platform.batch import PENDING, ActResult, LogContext, SqsRecord, process_batch
from chalicelib.platform.errors import (
    ProofNotYetPossible,
    ProviderTransientError,
    TransientError,
    error_class,
    may_have_acted,
)
from chalicelib.platform.idempotency import KeyState
from chalicelib.platform.logging import log_event
from chalicelib.platform.secrets import POSTMARK_SERVER_TOKEN, get_secrets
from chalicelib.providers.postmark.client import InactiveRecipients, PostmarkClient
from chalicelib.providers.ses.proof import SesOutcomeUnknown, sent_by_ses

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


class _Batch:
    """One invocation: records prepared one by one, then sent together."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.parsed: dict[str, OutboundEmail] = {}
        self.checked: set[str] = set()  # addresses looked up in the suppression list...
        self.blocked: set[str] = set()  # ...and those of them that are suppressed
        self.prepared: dict[str, Prepared] = {}
        self._postmark: PostmarkClient | None = None
        self.failover = Failover(
            svc.switch,
            svc.audit,
            svc.settings,
            probes={"postmark": self._probe_postmark, "ses": lambda: svc.ses_sender.probe()},
        )

    def prefetch(self, event: Mapping[str, Any]) -> None:
        """Read the provider switch (and probe a provider that is down, when it is this
        container's turn); parse every record and look up all their recipients with one
        BatchGetItem.

        Only a speed-up: a record that fails here is parsed (and fails) again in ``prepare``,
        and if the lookup fails each record looks its own recipients up.
        """
        self.failover.read()
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

    def _probe_postmark(self) -> None:
        """A send to Postmark's test sink exercises the path that failed (the search does
        not: it answered while sends timed out); without a probe sender, the search."""
        settings = self.svc.settings
        if settings.probe_from:
            message = {
                "From": settings.probe_from,
                "To": settings.probe_outbound_to,
                "Subject": "mailroom failover probe",
                "TextBody": "Is Postmark sending again?",
                "MessageStream": "outbound",
            }
            self.postmark().send(message)
        else:
            self.postmark().search_outbound({}, count=1)

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
        ready = Prepared(email, claim)
        try:
            ready.blocked = self._blocked(email)
            if ready.nobody_left():
                return record_suppressed(self.svc, ready)
            ready.provider = choose(
                self.svc.settings.providers_for(email.message_stream), self.failover.state
            )
            if claim.state is KeyState.UNCERTAIN:
                found = self._prove(ready)
                if found is not None:
                    [outcome] = record_sent(self.svc, [(ready, found)], "search")
                    if isinstance(outcome, BaseException):
                        raise outcome
                    return outcome
                log_event("earlier attempt did not send; sending", event_type=EVENT_TYPE)
        except Exception as err:
            self.svc.idempotency.settle_failure(claim, err)
            raise
        self.prepared[record.message_id] = ready
        return PENDING

    def _prove(self, ready: Prepared) -> str | None:
        """For an uncertain key: the earlier send's message id, or None once proven unsent
        (``ready.provider`` then says who sends it). Raises while it cannot be proven."""
        email, claim = ready.email, ready.claim
        wait_for_proof(claim, self.svc.settings.proof_delay_seconds)
        if "ses" in claim.attempted:
            # SES has no search: only its events prove a send, and nothing proves the
            # opposite, so this key is never sent again (dead-lettered at the limit).
            found = sent_by_ses(self.svc.delivery_log, email.correlation_id)
            if found is None:
                raise SesOutcomeUnknown(email.correlation_id)
            ready.provider = "ses"
            log_event("earlier send found in SES events", event_type=EVENT_TYPE)
            return found
        try:
            # Exact: Postmark filters on the metadata value we sent with the message.
            messages = self.postmark().search_outbound({"correlation_id": email.correlation_id})
        except ProviderTransientError as err:
            if self.failover.state.down == "postmark":
                raise ProofNotYetPossible(
                    "waiting for Postmark to prove an earlier attempt"
                ) from err
            raise
        if messages:
            ready.provider = "postmark"
            log_event("earlier send found by correlation id", event_type=EVENT_TYPE)
            return str(messages[0].get("MessageID", ""))
        return None

    def send(self, records: list[SqsRecord]) -> ActResult:
        """One ``/email/batch`` call for the Postmark records (more only after a 406), then
        one ``SendEmail`` per SES record."""
        ses = [r for r in records if self.prepared[r.message_id].provider == "ses"]
        ses_ids = {r.message_id for r in ses}
        answers = self._send_postmark([r for r in records if r.message_id not in ses_ids])
        for record in ses:
            answers[record.message_id] = self._send_ses(self.prepared[record.message_id])
        return answers

    def _send_ses(self, prepared: Prepared) -> str | BaseException:
        try:
            ses = self.svc.ses_sender  # built first: a failure here cannot have sent anything
            self.svc.idempotency.note_attempt(prepared.claim, "ses")
        except Exception as err:
            return record_failed(
                self.svc, prepared, TransientError(f"attempt not recorded: {error_class(err)}")
            )
        try:
            message_id = ses.send(prepared.email, prepared.blocked)
        except Exception as err:
            self.failover.count("ses", err)
            if not may_have_acted(err):
                self.svc.idempotency.forget_attempt(prepared.claim, "ses")
            return record_failed(self.svc, prepared, err)
        self.failover.count("ses", None)
        [outcome] = record_sent(self.svc, [(prepared, message_id)], "send")
        return outcome

    def _send_postmark(self, records: list[SqsRecord]) -> ActResult:
        answers: ActResult = {}
        if not records:
            return answers
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
                    answers[message_id] = record_failed(self.svc, self.prepared[message_id], err)
        sent = list(accepted.items())
        outcomes = record_sent(self.svc, [(self.prepared[m], pm_id) for m, pm_id in sent], "send")
        answers.update({m: outcome for (m, _), outcome in zip(sent, outcomes, strict=True)})
        return answers

    def _send_once(
        self, todo: list[str], answers: ActResult, accepted: dict[str, str]
    ) -> list[str]:
        """Send ``todo`` and sort the answers; the ids to send again (fewer recipients)."""
        ready = [self.prepared[m] for m in todo]
        results = self.postmark().send_batch([p.email.postmark_message(p.blocked) for p in ready])
        failed = [r.error for r in results if r.error is not None]
        if len(failed) < len(results):
            self.failover.count("postmark", None)
        elif failed:
            self.failover.count("postmark", failed[0])
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
                        answers[message_id] = record_suppressed(self.svc, prepared)
                    else:
                        again.append(message_id)
                    continue
                answers[message_id] = record_failed(self.svc, prepared, result.error)
            except Exception as err:
                # Postmark refused this message, so nothing was sent: a plain retry is safe.
                log_event(
                    "refusal not settled", event_type=EVENT_TYPE, error_class=error_class(err)
                )
                answers[message_id] = record_failed(
                    self.svc, prepared, TransientError("refused recipients could not be recorded")
                )
        return again

    def _suppress(self, prepared: Prepared, err: InactiveRecipients) -> bool:
        """Suppress the inactive recipients Postmark named; False if it named none of ours."""
        ours = {normalise(a) for a in prepared.email.recipients}
        named = set(err.addresses) & ours - prepared.blocked
        for address in sorted(named):
            self.svc.suppressions.add(address, reason="inactive", source="postmark")
        prepared.blocked |= named
        return bool(named)
