"""Gmail forwarder: a ``GmailRequest`` → ``users.messages.import`` into the target mailbox, once.

The idempotency key is ``delivery_key(email, recipient, "gmail")``, so an SES and a Postmark
copy of one Message-ID import once. An uncertain key (an earlier import may have been stored:
timeout, 5xx, crash) is settled by an ``rfc822msgid:`` search before importing again; Gmail's
undocumented Message-ID dedup is not relied on. ``invalid_grant`` dead-letters with the
re-authorize reason and leaves a health record (``GMAILAUTH#<mailbox>``) for ``mailroom health``.
Imports are paced per mailbox (Gmail: 25 units each, 15,000 units per user per minute).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests

from chalicelib.handlers.dispatch import load_mail
from chalicelib.mail.actions import GmailRequest, parse_request
from chalicelib.mail.inbound_email import delivery_key
from chalicelib.platform.aws import aws_client
from chalicelib.platform.batch import LogContext, SqsRecord, process_batch
from chalicelib.platform.idempotency import IdempotencyStore, KeyState
from chalicelib.platform.logging import get_logger, hash_id, log_event
from chalicelib.platform.secrets import get_secrets
from chalicelib.platform.settings import Settings, per_container
from chalicelib.providers.gmail.client import (
    GmailAuthRevoked,
    GmailClient,
    OAuthClient,
    TokenCache,
    parameter_name,
)

EVENT_TYPE = "gmail_forwarder"
ACTION = "gmail"
HEALTH_PREFIX = "GMAILAUTH#"
# 15,000 units per user per minute at 25 units per import: at most 10 imports/s per mailbox.
MIN_IMPORT_INTERVAL_SECONDS = 0.1


@dataclass
class _Services:
    settings: Settings
    idempotency: IdempotencyStore
    session: requests.Session
    tokens: TokenCache
    clients: dict[str, GmailClient] = field(default_factory=dict)
    last_import: dict[str, float] = field(default_factory=dict)
    healthy: set[str] = field(default_factory=set)
    sleep: Callable[[float], None] = time.sleep

    def client(self, mailbox: str) -> GmailClient:
        oauth = OAuthClient.from_json(get_secrets().current(parameter_name(mailbox)))
        cached = self.clients.get(mailbox)
        if cached is None or cached.oauth != oauth:  # re-authorized since: use the new token
            cached = GmailClient(
                mailbox,
                oauth,
                tokens=self.tokens,
                session=self.session,
                api_url=self.settings.gmail_api_url,
                timeout=self.settings.gmail_timeout_seconds,
            )
            self.clients[mailbox] = cached
        return cached

    def pace(self, mailbox: str) -> None:
        waited = time.monotonic() - self.last_import.get(mailbox, 0.0)
        if waited < MIN_IMPORT_INTERVAL_SECONDS:
            self.sleep(MIN_IMPORT_INTERVAL_SECONDS - waited)  # pacing, not synchronisation
        self.last_import[mailbox] = time.monotonic()


def _build(settings: Settings) -> _Services:
    get_logger(settings.log_level)
    session = requests.Session()
    return _Services(
        settings=settings,
        idempotency=IdempotencyStore.for_settings(settings, aws_client("dynamodb")),
        session=session,
        tokens=TokenCache(
            settings.gmail_token_url, session=session, timeout=settings.http_timeout_seconds
        ),
    )


services = per_container(_build)


def handle_batch(event: Mapping[str, Any], remaining_time_ms: Any = None) -> dict[str, Any]:
    """Lambda entry point for the ``gmail-forwarder`` queue."""
    services()
    return process_batch(
        event, handle_record, event_type=EVENT_TYPE, remaining_time_ms=remaining_time_ms
    )


def handle_record(record: SqsRecord, ctx: LogContext) -> str:
    """Import one email into one mailbox; return the outcome or raise."""
    request = parse_request(record.body, GmailRequest)
    ctx.message_id = request.mail.provider_message_id
    ctx.mailbox_id = hash_id(request.mailbox)
    svc = services()
    # Gmail takes the raw bytes as they are: only the header fields are parsed here.
    email, raw = load_mail(request.mail, request.recipient, headers_only=True)
    key = delivery_key(email, request.recipient, ACTION)
    store = svc.idempotency
    claim = store.claim(key)
    if claim.state is KeyState.COMPLETED:
        return "duplicate"
    try:
        client = svc.client(request.mailbox)
        if claim.state is KeyState.UNCERTAIN:
            if email.rfc_message_id:
                found = client.find_by_message_id(email.rfc_message_id)
                if found is not None:
                    store.complete(key, {"gmail_id": found, "mailbox_hash": ctx.mailbox_id or ""})
                    return "already_done"
            else:
                # Nothing to search by: importing again may duplicate; losing it is worse.
                log_event("uncertain import without Message-ID", event_type=EVENT_TYPE)
        svc.pace(request.mailbox)
        result = client.import_message(
            raw, labels=request.labels, never_mark_spam=request.never_mark_spam
        )
    except Exception as err:
        if isinstance(err, GmailAuthRevoked):
            record_auth_failure(svc.settings, request.mailbox, err.reason)
            svc.healthy.discard(request.mailbox)
        store.settle_failure(claim, err)
        raise
    store.complete(key, {**result, "mailbox_hash": ctx.mailbox_id or ""})
    if request.mailbox not in svc.healthy:
        clear_auth_failure(svc.settings, request.mailbox)
        svc.healthy.add(request.mailbox)
    return "imported"


def record_auth_failure(settings: Settings, mailbox: str, reason: str) -> None:
    """The health record the operator CLI reads: this mailbox needs re-authorization."""
    try:
        aws_client("dynamodb").put_item(
            TableName=settings.state_table,
            Item={
                "PK": {"S": HEALTH_PREFIX + mailbox},
                "SK": {"S": "v1"},
                "status": {"S": "reauthorize"},
                "reason": {"S": reason},
                "parameter": {"S": settings.parameter(parameter_name(mailbox))},
                "at": {"S": datetime.now(UTC).isoformat(timespec="seconds")},
            },
        )
    except Exception:  # the DLQ reason says the same; the health record is a convenience
        log_event("gmail health record not written", event_type=EVENT_TYPE)


def clear_auth_failure(settings: Settings, mailbox: str) -> None:
    """After a successful import: the mailbox's authorization works again."""
    try:
        aws_client("dynamodb").delete_item(
            TableName=settings.state_table,
            Key={"PK": {"S": HEALTH_PREFIX + mailbox}, "SK": {"S": "v1"}},
        )
    except Exception:
        log_event("gmail health record not cleared", event_type=EVENT_TYPE)


def auth_failures(settings: Settings, client: Any) -> list[dict[str, str]]:
    """Mailboxes whose Gmail authorization failed, for ``mailroom health`` (one Scan)."""
    found: list[dict[str, str]] = []
    kwargs: dict[str, Any] = {
        "TableName": settings.state_table,
        "FilterExpression": "begins_with(PK, :prefix)",
        "ExpressionAttributeValues": {":prefix": {"S": HEALTH_PREFIX}},
    }
    while True:
        page = client.scan(**kwargs)
        for item in page.get("Items", []):
            found.append(
                {
                    "mailbox": item["PK"]["S"][len(HEALTH_PREFIX) :],
                    **{k: v["S"] for k, v in item.items() if k not in {"PK", "SK"} and "S" in v},
                }
            )
        if "LastEvaluatedKey" not in page:
            return found
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
