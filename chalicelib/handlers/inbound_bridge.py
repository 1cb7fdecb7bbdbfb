"""Inbound bridge: SQS FIFO records of Postmark emails → routing → FreeScout, exactly once.

Per record: unwrap the SNS envelope, resolve the claim check, parse the model (failure is
poison), resolve the route, then, for ``freescout``, claim idempotency on the Postmark
MessageID, create the conversation (or add a thread when the email replies to one we
delivered), and complete the claim with the conversation id straight away.

The remaining duplicate window: FreeScout has no idempotency key, so a crash after
FreeScout answered 201 and before the claim is completed (one DynamoDB write later) leaves
an expired IN_PROGRESS record. The retry sees ``Claim.takeover`` and looks for the
conversation first (same mailbox, customer and subject, created within the last hour); one
match is reused, none is created. Only a crash in that window *and* an ambiguous search
(two matches) can still yield a duplicate conversation; we prefer it to losing the email.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from pydantic import ValidationError

from chalicelib import claimcheck
from chalicelib.batch import LogContext, SqsRecord, process_batch
from chalicelib.clients.aws import aws_client
from chalicelib.clients.freescout import FreeScoutClient
from chalicelib.errors import (
    ActionNotAvailable,
    PermanentError,
    PoisonMessageError,
    ProviderPermanentError,
)
from chalicelib.idempotency import Claim, ClaimState, IdempotencyStore
from chalicelib.logging import get_logger, log_event
from chalicelib.models.envelope import unwrap
from chalicelib.models.postmark_inbound import PostmarkInbound
from chalicelib.routing import DynamoRouteStore, RouteAction, RouteRule, resolve
from chalicelib.secrets import FREESCOUT_API_KEY, get_secrets
from chalicelib.settings import Settings, per_container

EVENT_TYPE = "inbound_bridge"
RECONCILE_WINDOW = timedelta(hours=1)


@dataclass
class _Services:
    settings: Settings
    routes: DynamoRouteStore
    idempotency: IdempotencyStore
    session: requests.Session


def _build(settings: Settings) -> _Services:
    get_logger(settings.log_level)
    dynamodb = aws_client("dynamodb")
    return _Services(
        settings=settings,
        routes=DynamoRouteStore(
            settings.routes_table, cache_seconds=settings.routes_cache_seconds, client=dynamodb
        ),
        idempotency=IdempotencyStore.for_settings(settings, dynamodb),
        session=requests.Session(),
    )


# Stores and the HTTP session, built once per container.
services = per_container(_build)


def handle_batch(event: Mapping[str, Any], remaining_time_ms: Any = None) -> dict[str, Any]:
    """Lambda entry point for the inbound bridge queue."""
    services()
    return process_batch(
        event, handle_record, event_type=EVENT_TYPE, remaining_time_ms=remaining_time_ms
    )


def handle_record(record: SqsRecord, ctx: LogContext) -> str:
    """Deliver one email; return the outcome or raise (see errors.py for the policy)."""
    message, _ = unwrap(record.body)
    payload = claimcheck.check_out(message)
    try:
        email = PostmarkInbound.model_validate_json(payload)
    except ValidationError as err:
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in err.errors()})
        raise PoisonMessageError(f"not a Postmark inbound payload: {', '.join(fields)}") from err
    ctx.message_id = email.message_id
    svc = services()
    rule = resolve(email.recipient, svc.routes.rules())
    if rule is None:
        raise PermanentError("no routing rule matches the recipient")
    if rule.action is RouteAction.DROP:
        return "dropped"
    if rule.action in {RouteAction.GMAIL, RouteAction.BOUNCE}:
        raise ActionNotAvailable(f"action not available yet: {rule.action.value}")
    if rule.action is not RouteAction.FREESCOUT:
        raise PermanentError("routing rule has an unknown action")
    ctx.mailbox_id = rule.target
    key = f"postmark:{email.message_id}"
    claim = svc.idempotency.claim(key)
    if claim.state is ClaimState.COMPLETED:
        return "duplicate"
    try:
        conversation_id, response = _deliver(email, rule, claim, svc)
    except BaseException:
        svc.idempotency.release_quietly(key)
        raise
    svc.idempotency.complete(key, {"conversation_id": str(conversation_id)})
    if email.rfc_message_id:
        _remember(email.rfc_message_id, conversation_id, svc.settings)
    _check_attachments(email, response)
    return "success"


def _deliver(
    email: PostmarkInbound, rule: RouteRule, claim: Claim, svc: _Services
) -> tuple[int, dict[str, Any]]:
    client = FreeScoutClient(
        svc.settings.freescout_url,
        get_secrets().current(FREESCOUT_API_KEY),
        session=svc.session,
        timeout=svc.settings.http_timeout_seconds,
    )
    mailbox_id = _mailbox_id(rule)
    thread = _thread(email, svc.settings.freescout_imported)
    existing = (
        _conversation_for(email.referenced_ids, svc.settings) if email.referenced_ids else None
    )
    if existing is not None:
        try:
            _, response = client.add_thread(existing, thread)
            return existing, response
        except ProviderPermanentError as err:
            if err.status_code != 404:
                raise
            # The conversation was deleted for good in FreeScout: start a new one.
            log_event("threaded conversation is gone", event_type=EVENT_TYPE, status_code=404)
    if claim.takeover:
        found = _reconcile(client, email, mailbox_id)
        if found is not None:
            log_event("reused conversation after takeover", event_type=EVENT_TYPE)
            return found, {}
    return client.create_conversation(
        {
            "type": "email",
            "mailboxId": mailbox_id,
            "subject": email.subject or "(no subject)",
            "customer": thread["customer"],
            "threads": [thread],
            "imported": svc.settings.freescout_imported,
        }
    )


def _mailbox_id(rule: RouteRule) -> int:
    try:
        return int(rule.target)
    except ValueError:
        raise PermanentError("freescout route target is not a mailbox id") from None


def _thread(email: PostmarkInbound, imported: bool) -> dict[str, Any]:
    first, _, last = email.from_full.name.strip().partition(" ")
    customer: dict[str, Any] = {"email": email.from_full.email}
    if first:
        customer["firstName"] = first
    if last:
        customer["lastName"] = last
    thread: dict[str, Any] = {
        "type": "customer",
        "text": email.body or "(empty message)",
        "customer": customer,
        "imported": imported,
    }
    if email.cc_full:
        thread["cc"] = [a.email for a in email.cc_full]
    if email.attachments:
        thread["attachments"] = [
            {"fileName": a.name, "mimeType": a.content_type, "data": a.content}
            for a in email.attachments
        ]
    return thread


def _conversation_for(referenced: list[str], settings: Settings) -> int | None:
    """The conversation of the newest referenced Message-ID we delivered (one BatchGetItem)."""
    keys = [{"PK": {"S": f"MSGID#{mid}"}, "SK": {"S": "FREESCOUT"}} for mid in referenced[:100]]
    response = aws_client("dynamodb").batch_get_item(
        RequestItems={settings.state_table: {"Keys": keys}}
    )
    found = {
        item["PK"]["S"][len("MSGID#") :]: int(item["conversation_id"]["N"])
        for item in response.get("Responses", {}).get(settings.state_table, [])
    }
    return next((found[mid] for mid in referenced if mid in found), None)


def _remember(rfc_message_id: str, conversation_id: int, settings: Settings) -> None:
    now = int(time.time())
    aws_client("dynamodb").put_item(
        TableName=settings.state_table,
        Item={
            "PK": {"S": f"MSGID#{rfc_message_id}"},
            "SK": {"S": "FREESCOUT"},
            "conversation_id": {"N": str(conversation_id)},
            "expires_at": {"N": str(now + 365 * 86_400)},
        },
    )


def _reconcile(client: FreeScoutClient, email: PostmarkInbound, mailbox_id: int) -> int | None:
    since = (datetime.now(UTC) - RECONCILE_WINDOW).strftime("%Y-%m-%dT%H:%M:%SZ")
    matches = client.find_conversations(
        mailboxId=mailbox_id,
        customerEmail=email.from_full.email,
        subject=email.subject or "(no subject)",
        createdSince=since,
        state="published",
    )
    if len(matches) == 1 and "id" in matches[0]:
        return int(matches[0]["id"])
    return None


def _check_attachments(email: PostmarkInbound, response: Mapping[str, Any]) -> None:
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
