"""One inbound email into FreeScout exactly once: a new conversation, a reply thread, or the
proof that an earlier, uncertain attempt already made it.

FreeScout keeps no idempotency key and no Message-ID on a thread, so every thread we write
carries a marker we control: the delivery key's hash in a hidden element of its body. A
conversation or reply thread is ours only if it carries this email's marker and was created
at or after this key's first attempt; body text alone never proves anything (two emails can
say "Thanks!"). Anything else is not proof: we create, since a duplicate beats a loss.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chalicelib.platform.errors import ProviderPermanentError
from chalicelib.platform.logging import log_event
from chalicelib.providers.freescout.client import FreeScoutClient

_MARKER_PREFIX = "mailroom-ref-"
_MARKED = re.compile(r'<div style="display:none">mailroom-ref-[0-9a-f]+</div>$')


@dataclass(frozen=True)
class Delivered:
    """Where the email now is in FreeScout, and how we know."""

    conversation_id: int
    how: str  # "created", "threaded" or "proven"
    new_conversation: bool
    response: dict[str, Any] = field(default_factory=dict)

    def result(self) -> dict[str, str]:
        return {"conversation_id": str(self.conversation_id), "how": self.how}


def delivery_marker(key: str) -> str:
    """The token that names one delivery key in FreeScout: stable, opaque, letters and digits."""
    return _MARKER_PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def marked(body: str, marker: str) -> str:
    """``body`` with ``marker`` appended out of sight. The marker is the element's text, not
    an attribute or a comment, so it survives an HTML sanitizer that drops those."""
    return f'{body}<div style="display:none">{marker}</div>'


def defects_note(defects: Sequence[str], original_name: str) -> str:
    """The visible note on an email that could not be fully decoded, naming what and where
    the original is."""
    listed = "".join(f"<li>{html.escape(d)}</li>" for d in defects)
    return (
        "<hr><p><b>mailroom:</b> part of this email could not be decoded. The original message"
        f" is attached as {html.escape(original_name)}.</p><ul>{listed}</ul>"
    )


def unmarked(text: str) -> str:
    """A thread body as the sender wrote it: without the marker ``marked`` appended."""
    return _MARKED.sub("", text)


def customer_thread(
    *,
    sender: str,
    sender_name: str,
    body: str,
    cc: list[str],
    attachments: list[dict[str, str]],
    imported: bool,
    marker: str,
    note: str = "",
) -> dict[str, Any]:
    """FreeScout's thread object for an email from ``sender``, carrying ``marker``; ``note``
    is shown after the body."""
    first, _, last = sender_name.strip().partition(" ")
    customer: dict[str, Any] = {"email": sender}
    if first:
        customer["firstName"] = first
    if last:
        customer["lastName"] = last
    thread: dict[str, Any] = {
        "type": "customer",
        "text": marked((body or "(empty message)") + note, marker),
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
        marker: str,
        reply_to: int | None,
        uncertain_since: int | None,
        owned_elsewhere: Callable[[int], bool],
    ) -> Delivered:
        """Put ``thread`` (built with ``marker``) into FreeScout once.

        ``reply_to`` is the conversation this email answers, if we delivered its parent;
        ``uncertain_since`` the first attempt's time when an earlier attempt may have acted.
        """
        if reply_to is not None:
            threaded = self._reply(reply_to, thread, marker, uncertain_since)
            if threaded is not None:
                return threaded
        if uncertain_since is not None:
            found = self._find_conversation(
                mailbox_id, subject, thread, marker, uncertain_since, owned_elsewhere
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
        self,
        conversation_id: int,
        thread: dict[str, Any],
        marker: str,
        uncertain_since: int | None,
    ) -> Delivered | None:
        """Add ``thread`` to its conversation; None if the conversation is gone."""
        if uncertain_since is not None:
            conversation = self._client.conversation(conversation_id)
            if conversation is None:
                return None
            if _has_thread(conversation, marker, uncertain_since):
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
        marker: str,
        since: int,
        owned_elsewhere: Callable[[int], bool],
    ) -> int | None:
        """The conversation an earlier attempt created for this email, if FreeScout has it."""
        candidates = self._client.find_conversations(
            mailboxId=mailbox_id,
            customerEmail=thread["customer"]["email"],
            createdSince=_iso(since),
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
            # createdSince already filtered on FreeScout's side; checked again where stated.
            and str(c.get("createdAt") or _iso(since)) >= _iso(since)
            and _first_thread_carries(c, marker)
        ]
        ours = [conversation_id for conversation_id in ours if not owned_elsewhere(conversation_id)]
        if len(ours) > 1:
            # Only this key writes its marker: several are earlier duplicates of this email.
            log_event(
                "several proven; keeping oldest", event_type=self._event_type, count=len(ours)
            )
        if ours:
            log_event("conversation proven to exist", event_type=self._event_type)
            return ours[0]
        return None


def _threads(conversation: Mapping[str, Any]) -> list[dict[str, Any]]:
    threads = conversation.get("_embedded", {}).get("threads") or []
    return [t for t in threads if isinstance(t, dict)]


def _text(thread: Mapping[str, Any]) -> str:
    return str(thread.get("body") or thread.get("text") or "")


def _first_thread_carries(conversation: Mapping[str, Any], marker: str) -> bool:
    threads = _threads(conversation)
    if not threads:
        return False
    # FreeScout lists threads newest first; the first thread is the oldest.
    first = min(threads, key=lambda t: (str(t.get("createdAt", "")), int(t.get("id", 0) or 0)))
    return marker in _text(first)


def _has_thread(conversation: Mapping[str, Any], marker: str, since: int) -> bool:
    """A customer thread with our marker, stamped at or after the first attempt (no margin:
    under clock skew the worst case is a logged duplicate, never a claimed stranger)."""
    earliest = _iso(since)
    return any(
        str(t.get("type", "customer")) == "customer"
        and str(t.get("createdAt", "")) >= earliest
        and marker in _text(t)
        for t in _threads(conversation)
    )


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
