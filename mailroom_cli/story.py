"""What mailroom knows about one email, gathered from every source by any of its ids.

The identifier index (``chalicelib/mail/trace_index.py``) turns the id the operator holds
into the email's key and every other id of it; dead letters, idempotency records, the
delivery log, audit records and log lines are then looked up by all of those ids, so a
Message-ID finds the log lines hashed by the SES id and the redrive audited by SQS id.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Any

from chalicelib.mail.inbound_email import EmailSource, delivery_key_for
from chalicelib.mail.trace_index import TraceIndex, normalise_id
from chalicelib.platform.logging import hash_id
from mailroom_cli import queues
from mailroom_cli.context import Context
from mailroom_cli.deadletters import DeadLetter
from mailroom_cli.dlq import SCAN_LIMIT, letters
from mailroom_cli.pipelines import PIPELINES

# Audit details list ids as "kind:value", comma- or space-separated.
_TOKENS = re.compile(r"[\s,]+")
# Kinds whose ids key a pipeline's idempotency record as ``<prefix><id>``.
_KEYED_KINDS = {"correlation", "outbound", "sqs", "given"}


def index(ctx: Context) -> TraceIndex:
    return TraceIndex.for_settings(ctx.settings, ctx.client("dynamodb"))


def spellings(value: str) -> set[str]:
    """The forms an id is hashed or stored in: as typed, normalised, and in angle brackets."""
    bare = normalise_id(value)
    return {value, value.strip(), bare, f"<{bare}>"} - {""}


def all_dead_letters(ctx: Context) -> list[tuple[str, DeadLetter]]:
    """Every dead letter of every pipeline (processing and subscription DLQs)."""
    found = []
    for pipeline in ctx.pipelines():
        for name in (pipeline.dlq_name(ctx.stage), pipeline.sub_dlq_name(ctx.stage)):
            url = ctx.queue_url(name) if name else None
            if url is None:
                continue
            with queues.held(ctx.client("sqs"), url, limit=SCAN_LIMIT) as messages:
                found += [(pipeline.name, letters(ctx, m)) for m in messages]
    return found


def _names(letter: DeadLetter, wanted: set[str]) -> bool:
    values = {letter.message_id, *(b.value for b in letter.business_ids)}
    return any(normalise_id(v) in wanted for v in values if v)


class Story:
    """The ids of one trace and everything found by them."""

    def __init__(self, ctx: Context, ident: str, recipient: str | None = None) -> None:
        self.ctx = ctx
        self.ident = ident
        self.recipient = recipient
        self.ids: dict[str, set[str]] = {"given": {ident.strip()}}
        self.emails: dict[str, dict[str, Any]] = {}

    def _known(self) -> set[str]:
        return {normalise_id(v) for values in self.ids.values() for v in values}

    def _add(self, kind: str, value: str) -> bool:
        if not value or normalise_id(value) in self._known():
            return False
        self.ids.setdefault(kind, set()).add(value)
        return True

    def _resolve(self, store: TraceIndex, value: str) -> None:
        for hit in store.emails(value):
            if hit.email in self.emails:
                continue
            steps = store.story(hit.email)
            self.emails[hit.email] = {"email": hit.email, "found_by": hit.kind, "story": steps}
            source, _, provider_id = hit.email.partition(":")
            self._add(source, provider_id)
            for step in steps:
                for kind, found in step["ids"].items():
                    self._add(kind, found)

    def gather(self) -> dict[str, Any]:
        store = index(self.ctx)
        self._resolve(store, self.ident)
        for value in list(self._all()):
            self._resolve(store, value)
        dead = all_dead_letters(self.ctx)
        matched: dict[str, dict[str, Any]] = {}
        for _ in range(2):  # a letter's business ids may lead to the email, and back to others
            wanted = self._known()
            for pipeline, letter in dead:
                if letter.message_id in matched or not _names(letter, wanted):
                    continue
                matched[letter.message_id] = {"pipeline": pipeline, **letter.summary()}
                self._add("sqs", letter.message_id)
                for business in letter.business_ids:
                    if business.kind != "key" and self._add(business.kind, business.value):
                        self._resolve(store, business.value)
        return {
            "id": self.ident,
            "message_id_hash": hash_id(self.ident),
            "ids": {kind: sorted(values) for kind, values in sorted(self.ids.items())},
            "emails": list(self.emails.values()),
            "idempotency": self._idempotency(dead_keys=self._letter_keys(dead, matched)),
            "conversation_id": self._conversation(),
            "delivery_log": self._delivery_log(),
            "dead_letters": list(matched.values()),
            "audit": self._audit(),
        }

    def _all(self) -> set[str]:
        return {v for values in self.ids.values() for v in values}

    def hashes(self) -> set[str]:
        """Every hash a record of this email may carry (logs, audit)."""
        return {h for v in self._all() for s in spellings(v) if (h := hash_id(s))}

    def _letter_keys(
        self, dead: list[tuple[str, DeadLetter]], matched: dict[str, Any]
    ) -> list[str]:
        return [
            b.value
            for _, letter in dead
            if letter.message_id in matched
            for b in letter.business_ids
            if b.kind == "key"
        ]

    def _idempotency(self, dead_keys: list[str]) -> list[dict[str, Any]]:
        candidates = [
            (p.name, f"{p.key_prefix}{value}")
            for p in PIPELINES
            if p.key_prefix
            for kind in _KEYED_KINDS
            for value in self.ids.get(kind, ())
        ]
        for email in self.emails.values():
            for step in email["story"]:
                if step["details"].get("key"):
                    action = step["details"].get("action", "deliver")
                    candidates.append((f"deliver:{action}", step["details"]["key"]))
        candidates += [("dead letter", key) for key in dead_keys]
        if self.recipient:
            rfc = [normalise_id(v) for v in self.ids.get("rfc", set()) | self.ids["given"]]
            for source in EmailSource:
                for action in ("freescout", "gmail", "bounce"):
                    for value in rfc:
                        key = delivery_key_for(
                            f"<{value}>" if "@" in value else None,
                            source,
                            value,
                            self.recipient,
                            action,
                        )
                        candidates.append((f"deliver:{action}", key))
        found = []
        seen: set[str] = set()
        for name, key in candidates:
            if key in seen:
                continue
            seen.add(key)
            record = self.ctx.key_record(key)
            if record is not None:
                found.append({"pipeline": name, "key": key, **record})
        return found

    def _conversation(self) -> str | None:
        for email in self.emails.values():
            for step in email["story"]:
                if step["ids"].get("conversation"):
                    return str(step["ids"]["conversation"])
        table = self.ctx.settings.state_table
        client = self.ctx.client("dynamodb")
        for value in {normalise_id(v) for v in self.ids.get("rfc", set()) | self.ids["given"]}:
            if "@" not in value:
                continue
            item = client.get_item(
                TableName=table, Key={"PK": {"S": f"MSGID#<{value}>"}, "SK": {"S": "FREESCOUT"}}
            ).get("Item")
            if item:
                return str(item["conversation_id"]["N"])
        return None

    def _delivery_log(self) -> list[dict[str, Any]]:
        history: list[dict[str, Any]] = []
        values = {v.strip() for v in self._all()}
        for value in sorted(values):
            history += [
                {**asdict(e), "status": e.status.value}
                for e in self.ctx.delivery_log.history(value)
            ]
        return sorted(history, key=lambda e: str(e["at"]))

    def _audit(self) -> list[dict[str, Any]]:
        wanted = self.hashes() | {s for v in self._all() for s in spellings(v)}
        return [
            asdict(r)
            for r in self.ctx.audit.list(days=14, limit=1000)
            if wanted & {v for d in r.details.values() for v in _tokens(d)}
        ]


def _tokens(detail: str) -> set[str]:
    """``"postmark:pm-1 ses:x"`` → the detail, its parts, and each part without its kind."""
    parts = _TOKENS.split(detail)
    return {detail, *parts, *(p.split(":", 1)[1] for p in parts if ":" in p)}
