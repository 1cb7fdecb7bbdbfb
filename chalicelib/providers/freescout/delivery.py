"""One inbound email into FreeScout exactly once: a new conversation, a reply thread, or the
proof that an earlier, uncertain attempt already made it.

FreeScout keeps no idempotency key, so identity is proven from what it does keep. A
conversation is ours only if it was created after this key's first attempt began (less a
clock-skew margin), for the same customer, and its first thread is this email (same body
fingerprint), and no other key has recorded it as its own. A reply thread is ours only if it
was added to the conversation after the first attempt and carries the same fingerprint.
Anything else is not proof: we create, since a duplicate is better than a loss.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chalicelib.platform.errors import ProviderPermanentError
from chalicelib.platform.logging import log_event
from chalicelib.providers.freescout.client import FreeScoutClient

# FreeScout's clock and ours may differ; a conversation stamped this much before our first
# attempt can still be ours.
CLOCK_SKEW_SECONDS = 300
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Delivered:
    """Where the email now is in FreeScout, and how we know."""

    conversation_id: int
    how: str  # "created", "threaded" or "proven"
    new_conversation: bool
    response: dict[str, Any] = field(default_factory=dict)

    def result(self) -> dict[str, str]:
        return {"conversation_id": str(self.conversation_id), "how": self.how}


def fingerprint(text: str) -> str:
    """A digest of a thread body that survives FreeScout's HTML and whitespace handling."""
    plain = _SPACE.sub(" ", html.unescape(_TAG.sub(" ", text or ""))).strip().lower()
    return hashlib.sha256(plain.encode("utf-8")).hexdigest()


def customer_thread(
    *,
    sender: str,
    sender_name: str,
    body: str,
    cc: list[str],
    attachments: list[dict[str, str]],
    imported: bool,
) -> dict[str, Any]:
    """FreeScout's thread object for an email from ``sender``."""
    first, _, last = sender_name.strip().partition(" ")
    customer: dict[str, Any] = {"email": sender}
    if first:
        customer["firstName"] = first
    if last:
        customer["lastName"] = last
    thread: dict[str, Any] = {
        "type": "customer",
        "text": body or "(empty message)",
        "customer": customer,
        "imported": imported,
    }
    if cc:
        thread["cc"] = cc
    if attachments:
        thread["attachments"] = attachments
    return thread


class FreeScoutDelivery:
    """Creates, threads or proves, over one FreeScout client."""

    def __init__(self, client: FreeScoutClient, *, imported: bool, event_type: str) -> None:
        self._client = client
        self._imported = imported
        self._event_type = event_type

    def deliver(
        self,
        *,
        mailbox_id: int,
        subject: str,
        thread: dict[str, Any],
        reply_to: int | None,
        uncertain_since: int | None,
        owned_elsewhere: Callable[[int], bool],
    ) -> Delivered:
        """Put ``thread`` into FreeScout once.

        ``reply_to`` is the conversation this email answers, if we delivered its parent;
        ``uncertain_since`` the first attempt's time when an earlier attempt may have acted.
        """
        if reply_to is not None:
            threaded = self._reply(reply_to, thread, uncertain_since)
            if threaded is not None:
                return threaded
        if uncertain_since is not None:
            found = self._find_conversation(
                mailbox_id, subject, thread, uncertain_since, owned_elsewhere
            )
            if found is not None:
                return Delivered(found, "proven", new_conversation=True)
        conversation_id, response = self._client.create_conversation(
            {
                "type": "email",
                "mailboxId": mailbox_id,
                "subject": subject,
                "customer": thread["customer"],
                "threads": [thread],
                "imported": self._imported,
            }
        )
        return Delivered(conversation_id, "created", new_conversation=True, response=response)

    def _reply(
        self, conversation_id: int, thread: dict[str, Any], uncertain_since: int | None
    ) -> Delivered | None:
        """Add ``thread`` to its conversation; None if the conversation is gone."""
        if uncertain_since is not None:
            conversation = self._client.conversation(conversation_id)
            if conversation is None:
                return None
            if _has_thread(conversation, thread, uncertain_since):
                log_event("reply thread proven to exist", event_type=self._event_type)
                return Delivered(conversation_id, "proven", new_conversation=False)
        try:
            _, response = self._client.add_thread(conversation_id, thread)
        except ProviderPermanentError as err:
            if err.status_code != 404:
                raise
            # The conversation was deleted for good in FreeScout: start a new one.
            log_event("threaded conversation is gone", event_type=self._event_type, status_code=404)
            return None
        return Delivered(conversation_id, "threaded", new_conversation=False, response=response)

    def _find_conversation(
        self,
        mailbox_id: int,
        subject: str,
        thread: dict[str, Any],
        since: int,
        owned_elsewhere: Callable[[int], bool],
    ) -> int | None:
        """The conversation an earlier attempt created for this email, if FreeScout has it."""
        candidates = self._client.find_conversations(
            mailboxId=mailbox_id,
            customerEmail=thread["customer"]["email"],
            createdSince=_iso(since - CLOCK_SKEW_SECONDS),
            state="published",
            embed="threads",
            sortField="createdAt",
            sortOrder="asc",
        )
        ours = [
            int(c["id"])
            for c in candidates
            if isinstance(c, dict)
            and str(c.get("id", "")).isdigit()
            and str(c.get("subject", subject)).strip().lower() == subject.strip().lower()
            and _first_thread_matches(c, thread)
        ]
        ours = [conversation_id for conversation_id in ours if not owned_elsewhere(conversation_id)]
        if len(ours) == 1:
            log_event("conversation proven to exist", event_type=self._event_type)
            return ours[0]
        if ours:
            # Two identical conversations after our first attempt: we cannot tell which is
            # ours, so we create one more rather than risk claiming another email's.
            log_event("ambiguous proof; creating", event_type=self._event_type, count=len(ours))
        return None


def _threads(conversation: Mapping[str, Any]) -> list[dict[str, Any]]:
    threads = conversation.get("_embedded", {}).get("threads") or []
    return [t for t in threads if isinstance(t, dict)]


def _text(thread: Mapping[str, Any]) -> str:
    return str(thread.get("body") or thread.get("text") or "")


def _first_thread_matches(conversation: Mapping[str, Any], thread: Mapping[str, Any]) -> bool:
    threads = _threads(conversation)
    if not threads:
        return False
    # FreeScout lists threads newest first; the first thread is the oldest.
    first = min(threads, key=lambda t: (str(t.get("createdAt", "")), int(t.get("id", 0) or 0)))
    return fingerprint(_text(first)) == fingerprint(str(thread["text"]))


def _has_thread(conversation: Mapping[str, Any], thread: Mapping[str, Any], since: int) -> bool:
    wanted = fingerprint(str(thread["text"]))
    earliest = _iso(since - CLOCK_SKEW_SECONDS)
    return any(
        str(t.get("type", "customer")) == "customer"
        and str(t.get("createdAt", earliest)) >= earliest
        and fingerprint(_text(t)) == wanted
        for t in _threads(conversation)
    )


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
