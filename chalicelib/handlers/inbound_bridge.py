"""Inbound bridge: SQS FIFO records of received emails → routing → FreeScout, exactly once.

Records carry a Postmark payload (from the webhook) or an SES reference (from the router:
the raw MIME in S3); both become one normalised ``InboundEmail``. Per record: unwrap the SNS
envelope, resolve the claim check, parse (failure is poison), resolve the route and take the
one inbound decision (``mail.decision``): a drop is audited, no rule dead-letters with the
reason, gmail and bounce go to their queues (``handlers.dispatch``). For ``freescout``, after
the same decision (Postmark spam is dropped too): claim the key (``delivery_key``: one per RFC
Message-ID and recipient, so Postmark and SES copies of one email deliver once) and deliver
(``freescout_delivery``: a new conversation, a reply thread, or — when an earlier attempt
may have acted — the proof that FreeScout already has it). The record is then ``PENDING``:
once the batch is through, one TransactWriteItems writes, per delivered email, the threading
map (RFC Message-ID → conversation), the conversation's owner and the completed claim, so
the map can never be missing behind a completed key. A new email costs two DynamoDB writes
(its claim and its share of the batch's transaction) and no read.

If that transaction fails, the emails are in FreeScout but not recorded: their keys are
marked uncertain, and the retry proves instead of creating again.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chalicelib.handlers.dispatch import act
from chalicelib.handlers.services import Services, services
from chalicelib.mail.actions import MailRef
from chalicelib.mail.decision import decide_inbound, is_automatic_report
from chalicelib.mail.inbound_email import InboundEmail, delivery_key, load_ses_email, read_raw
from chalicelib.mail.routing import RouteAction, resolve
from chalicelib.mail.trace_index import IdKind, Mark, email_key, routed
from chalicelib.mail.trace_index import delivered as delivered_step
from chalicelib.platform import claimcheck
from chalicelib.platform.aws import aws_client
from chalicelib.platform.batch import PENDING, ActResult, LogContext, SqsRecord, process_batch
from chalicelib.platform.envelope import unwrap
from chalicelib.platform.errors import (
    EffectNotRecorded,
    PermanentError,
    PoisonMessageError,
    error_class,
)
from chalicelib.platform.idempotency import Claim, KeyState
from chalicelib.platform.logging import log_event, log_routing_decision
from chalicelib.platform.secrets import FREESCOUT_API_KEY, get_secrets
from chalicelib.providers.freescout.client import FreeScoutClient
from chalicelib.providers.freescout.delivery import (
    Delivered,
    FreeScoutDelivery,
    customer_thread,
    defects_note,
    delivery_marker,
)
from chalicelib.providers.postmark.inbound import (
    PostmarkInbound,
    parse_postmark_inbound,
    postmark_ref,
    to_inbound_email,
)

EVENT_TYPE = "inbound_bridge"
ACTOR = "inbound_bridge"
# DynamoDB takes at most 100 items in one transaction; a record adds at most three.
TRANSACTION_ITEMS = 99
MAP_TTL_SECONDS = 365 * 86_400


def handle_batch(event: Mapping[str, Any], remaining_time_ms: Any = None) -> dict[str, Any]:
    """Lambda entry point for the inbound bridge queue."""
    batch = _Batch(services())
    return process_batch(
        event,
        batch.deliver,
        event_type=EVENT_TYPE,
        remaining_time_ms=remaining_time_ms,
        act=batch.record,
    )


@dataclass(frozen=True)
class _Received:
    """One record's email, and the Postmark payload it came as (None for SES mail)."""

    email: InboundEmail
    postmark: PostmarkInbound | None
    payload: str


def parse(record: SqsRecord) -> _Received:
    """The email in ``record``, by the webhook's own parser or from S3; malformed is poison."""
    message, _ = unwrap(record.body)
    payload = claimcheck.check_out(message)
    if payload.lstrip().startswith('{"source":"ses"'):
        reference = json.loads(payload)
        # Only the router writes these. A Postmark payload always has a MessageID (the
        # webhook refuses one without), so a webhook caller cannot pass as the router.
        if isinstance(reference, dict) and "MessageID" not in reference:
            return _Received(load_ses_email(reference), None, payload)
    parsed = parse_postmark_inbound(payload)
    return _Received(to_inbound_email(parsed, parsed.recipient), parsed, payload)


@dataclass(frozen=True)
class _Done:
    claim: Claim
    delivered: Delivered
    rfc_message_id: str | None
    email_key: str
    recipient: str
    marks: tuple[Mark, ...]  # received and routed (Postmark mail), written with the rest


class _Batch:
    """One invocation: emails delivered one by one, then recorded together."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.done: dict[str, _Done] = {}
        self._delivery: FreeScoutDelivery | None = None

    def delivery(self) -> FreeScoutDelivery:
        if self._delivery is None:
            settings = self.svc.settings
            client = FreeScoutClient(
                settings.freescout_url,
                get_secrets().current(FREESCOUT_API_KEY),
                session=self.svc.session,
                timeout=settings.http_timeout_seconds,
            )
            self._delivery = FreeScoutDelivery(
                client, imported=settings.freescout_imported, event_type=EVENT_TYPE
            )
        return self._delivery

    def deliver(self, record: SqsRecord, ctx: LogContext) -> str:
        """Deliver one email; ``PENDING`` until ``record`` writes it down."""
        received = parse(record)
        email = received.email
        ctx.message_id = email.provider_message_id
        rule = resolve(email.recipient, self.svc.routes.rules())
        log_routing_decision(
            EVENT_TYPE,
            message_id=email.provider_message_id,
            action=rule.action.value if rule is not None else "none",
            pattern=rule.pattern if rule is not None else None,
            mailbox_id=rule.target
            if rule is not None and rule.action is RouteAction.FREESCOUT
            else None,
        )
        mail = _mail_ref(received)
        decision = decide_inbound(mail, email.recipient, rule)
        freescout = decision.action is RouteAction.FREESCOUT
        key_of_email = email_key(email.source.value, email.provider_message_id)
        marks = _received(received, key_of_email)
        if received.postmark is not None:  # the router wrote SES mail's routing step
            marks.append(
                routed(
                    key_of_email,
                    recipient=email.recipient,
                    rule=rule.pattern if rule is not None else None,
                    action=rule.action.value if rule is not None else "none",
                    outcome="no_rule"
                    if decision.dead_letter is not None
                    else decision.action.value
                    if decision.delivers and decision.action is not None
                    else "dropped",
                )
            )
        if not freescout or not decision.delivers or decision.dead_letter is not None:
            try:
                if decision.delivers and decision.dead_letter is None:
                    if received.postmark is None:
                        raise PermanentError("route changed after the router sent this email here")
                    # The forwarder or the bouncer loads the payload itself: claim-checked here.
                    mail = postmark_ref(received.payload, received.postmark)
                return act(
                    decision,
                    mail,
                    email.recipient,
                    self.svc.settings,
                    self.svc.audit,
                    actor=ACTOR,
                    event_type=EVENT_TYPE,
                )
            finally:
                self.svc.index.write(marks)
        ctx.mailbox_id = decision.target
        mailbox_id = int(decision.target)
        if email.defects and not email.readable:
            raise PoisonMessageError("nothing readable: " + "; ".join(email.defects)[:500])
        key = delivery_key(email, email.recipient, RouteAction.FREESCOUT.value)
        if any(done.claim.key == key for done in self.done.values()):
            return "duplicate"  # delivered earlier in this batch; its record is on the way
        claim = self.svc.idempotency.claim(key)
        if claim.state is KeyState.COMPLETED:
            return "duplicate"
        try:
            delivered = self._deliver(email, mailbox_id, claim, received)
        except Exception as err:
            self.svc.idempotency.settle_failure(claim, err)
            raise
        _check_attachments(email, delivered.response)
        self.done[record.message_id] = _Done(
            claim, delivered, email.rfc_message_id, key_of_email, email.recipient, tuple(marks)
        )
        return PENDING

    def _deliver(
        self, email: InboundEmail, mailbox_id: int, claim: Claim, received: _Received
    ) -> Delivered:
        marker = delivery_marker(claim.key)
        attachments = [
            {
                "fileName": a.filename,
                "mimeType": a.content_type,
                "data": base64.b64encode(a.content).decode("ascii"),
            }
            for a in email.attachments
        ]
        note = ""
        if email.defects:
            # What could not be decoded is named in the thread, and the original travels
            # with it, so an agent can read what we could not.
            name, mime_type, original = _original(received)
            attachments.append(
                {
                    "fileName": name,
                    "mimeType": mime_type,
                    "data": base64.b64encode(original).decode("ascii"),
                }
            )
            note = defects_note(email.defects, name)
            log_event(
                "delivered with a note on what could not be decoded",
                event_type=EVENT_TYPE,
                outcome="defects_noted",
                count=len(email.defects),
            )
        sender = email.from_address or email.envelope_sender
        if not sender:
            raise PoisonMessageError(
                "no sender address: no From header and the null envelope sender <>, and a "
                "FreeScout conversation needs a customer address (the raw copy is kept)"
            )
        thread = customer_thread(
            sender=sender,
            sender_name=email.from_name,
            body=email.html_body or email.text_body,
            cc=list(email.cc),
            attachments=attachments,
            imported=self.svc.settings.freescout_imported,
            marker=marker,
            note=note,
        )
        uncertain = claim.state is KeyState.UNCERTAIN
        if uncertain:
            log_event("earlier attempt may have acted; proving", event_type=EVENT_TYPE)
        return self.delivery().deliver(
            mailbox_id=mailbox_id,
            subject=email.subject or "(no subject)",
            thread=thread,
            marker=marker,
            reply_to=self._conversation_for(email.referenced_ids),
            uncertain_since=claim.first_attempt_at if uncertain else None,
            owned_elsewhere=lambda conversation_id: self._owned_elsewhere(
                conversation_id, claim.key
            ),
        )

    def record(self, records: list[SqsRecord]) -> ActResult:
        """Write the map, owner and completion of every delivered email: one transaction."""
        answers: ActResult = {}
        chunk: list[tuple[str, _Done]] = []
        items = 0
        for record in records:
            done = self.done[record.message_id]
            size = len(self._items(done))
            if chunk and items + size > TRANSACTION_ITEMS:
                answers.update(self._write(chunk))
                chunk, items = [], 0
            chunk.append((record.message_id, done))
            items += size
        if chunk:
            answers.update(self._write(chunk))
        return answers

    def _write(self, chunk: list[tuple[str, _Done]]) -> ActResult:
        table = self.svc.settings.state_table
        items: dict[tuple[str, str], dict[str, Any]] = {}
        for _, done in chunk:
            for item in self._items(done):
                items[(item["PK"]["S"], item["SK"]["S"])] = item  # one per key in a transaction
        try:
            aws_client("dynamodb").transact_write_items(
                TransactItems=[{"Put": {"TableName": table, "Item": i}} for i in items.values()]
            )
        except Exception as err:
            log_event(
                "delivered, but not recorded", event_type=EVENT_TYPE, error_class=error_class(err)
            )
            failure = EffectNotRecorded("delivered to FreeScout, but not recorded")
            for _, done in chunk:
                self.svc.idempotency.settle_failure(done.claim, failure)
            return {message_id: failure for message_id, _ in chunk}
        return {message_id: _outcome(done.delivered) for message_id, done in chunk}

    def _items(self, done: _Done) -> list[dict[str, Any]]:
        now = int(time.time())
        conversation = {"N": str(done.delivered.conversation_id)}
        items = [self.svc.idempotency.completed_item(done.claim, done.delivered.result())]
        if done.rfc_message_id:
            items.append(
                {
                    "PK": {"S": f"MSGID#{done.rfc_message_id}"},
                    "SK": {"S": "FREESCOUT"},
                    "conversation_id": conversation,
                    "expires_at": {"N": str(now + MAP_TTL_SECONDS)},
                }
            )
        if done.delivered.new_conversation:
            items.append(
                {
                    "PK": {"S": f"CONVERSATION#{done.delivered.conversation_id}"},
                    "SK": {"S": "OWNER"},
                    "key": {"S": done.claim.key},
                    "expires_at": {"N": str(now + MAP_TTL_SECONDS)},
                }
            )
        step = delivered_step(
            done.email_key,
            action=RouteAction.FREESCOUT.value,
            recipient=done.recipient,
            key=done.claim.key,
            result=done.delivered.result(),
        )
        for mark in (*done.marks, step):
            items.extend(self.svc.index.items(mark))
        return items

    def _conversation_for(self, referenced: list[str]) -> int | None:
        """The conversation of the newest referenced Message-ID we delivered (one read)."""
        if not referenced:
            return None
        table = self.svc.settings.state_table
        keys = [{"PK": {"S": f"MSGID#{mid}"}, "SK": {"S": "FREESCOUT"}} for mid in referenced[:100]]
        response = aws_client("dynamodb").batch_get_item(RequestItems={table: {"Keys": keys}})
        found = {
            item["PK"]["S"][len("MSGID#") :]: int(item["conversation_id"]["N"])
            for item in response.get("Responses", {}).get(table, [])
        }
        return next((found[mid] for mid in referenced if mid in found), None)

    def _owned_elsewhere(self, conversation_id: int, key: str) -> bool:
        """Whether another key recorded ``conversation_id`` as the one it created."""
        item = (
            aws_client("dynamodb")
            .get_item(
                TableName=self.svc.settings.state_table,
                Key={"PK": {"S": f"CONVERSATION#{conversation_id}"}, "SK": {"S": "OWNER"}},
            )
            .get("Item")
        )
        return bool(item) and item.get("key", {}).get("S") != key


def _received(received: _Received, key: str) -> list[Mark]:
    """The received step of Postmark mail (the router writes SES mail's)."""
    email = received.email
    if received.postmark is None:
        return []
    return [
        Mark(
            email=key,
            stage="received",
            outcome="accepted",
            ids={
                IdKind.POSTMARK: email.provider_message_id,
                IdKind.RFC: email.rfc_message_id or "",
            },
            addresses={"to": list(email.recipients), "from": [email.envelope_sender]},
            details={"source": email.source.value},
        )
    ]


def _original(received: _Received) -> tuple[str, str, bytes]:
    """The email as it reached us: SES's raw MIME, or the Postmark payload (already parsed by
    Postmark, so the JSON is the original we have)."""
    location = received.email.raw_location
    if received.postmark is None and location is not None:
        return "original.eml", "message/rfc822", read_raw(location.bucket, location.key)
    return "original-postmark.json", "application/json", received.payload.encode("utf-8")


def _outcome(delivered: Delivered) -> str:
    return "success" if delivered.how != "proven" else "already_delivered"


def _mail_ref(received: _Received) -> MailRef:
    """What the one inbound decision reads: Postmark's payload facts, or the router's."""
    if received.postmark is not None:
        return postmark_ref(None, received.postmark)
    email = received.email
    return MailRef(
        source=email.source,
        provider_message_id=email.provider_message_id,
        received_at=datetime.now(UTC),
        envelope_sender=email.envelope_sender,
        rfc_message_id=email.rfc_message_id,
        verdicts=email.verdicts,
        location=email.raw_location,
        auto_report=is_automatic_report(email.headers),
    )


def _check_attachments(email: InboundEmail, response: Mapping[str, Any]) -> None:
    """FreeScout skips bad attachments silently; say so when fewer arrived than we sent."""
    threads = response.get("_embedded", {}).get("threads") or []
    if not email.attachments or not threads:
        return
    arrived = len(threads[0].get("_embedded", {}).get("attachments") or [])
    if arrived < len(email.attachments):
        log_event(
            "attachments missing in FreeScout",
            event_type=EVENT_TYPE,
            count=len(email.attachments) - arrived,
            outcome="attachments_missing",
        )
