"""The post-incident note of a redrive (``dlq redrive --ops-note ROOT_CAUSE``): time, root
cause, resolution, count and redrive time, as a FreeScout note in the ops mailbox, once.

"Once" is the idempotency protocol's: the key is the set of redriven dead letters, so running
the same redrive note again finds it COMPLETED; an uncertain earlier attempt is proven by
FreeScout's search for the note's subject before writing again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime

from chalicelib.platform.idempotency import KeyState
from chalicelib.platform.secrets import FREESCOUT_API_KEY
from chalicelib.providers.freescout.client import FreeScoutClient
from mailroom_cli.console import ConfigError
from mailroom_cli.context import Context
from mailroom_cli.deadletters import DeadLetter


def _freescout(ctx: Context) -> FreeScoutClient:
    if ctx.target.local and ctx.target.state_dir is not None:
        local = json.loads((ctx.target.state_dir / "local.json").read_text())
        url, key = local["freescout"]["url"], local["freescout"]["api_key"]
    else:
        url = os.environ.get("MAILROOM_FREESCOUT_URL") or ""
        if not url:
            raise ConfigError("--ops-note needs MAILROOM_FREESCOUT_URL (the FreeScout base URL)")
        key = ctx.client("ssm").get_parameter(
            Name=ctx.settings.parameter(FREESCOUT_API_KEY), WithDecryption=True
        )["Parameter"]["Value"]
    return FreeScoutClient(url, key, timeout=ctx.settings.http_timeout_seconds)


def mailbox_id(ctx: Context) -> int:
    """The ops mailbox: ``MAILROOM_OPS_MAILBOX_ID`` (the CLI's environment, or the stack's)."""
    value = os.environ.get("MAILROOM_OPS_MAILBOX_ID", "")
    if not value and ctx.target.local and ctx.target.state_dir is not None:
        local = json.loads((ctx.target.state_dir / "local.json").read_text())
        value = str(local.get("env", {}).get("MAILROOM_OPS_MAILBOX_ID", "1"))
    if not value.isdigit() or not int(value):
        raise ConfigError("--ops-note needs MAILROOM_OPS_MAILBOX_ID (the ops FreeScout mailbox)")
    return int(value)


def write(
    ctx: Context,
    *,
    pipeline: str,
    moved: Sequence[DeadLetter],
    root_cause: str,
    resolution: str,
) -> str:
    """Write the note for ``moved`` (once); the FreeScout conversation id."""
    ids = sorted(letter.message_id for letter in moved)
    key = "opsnote:" + hashlib.sha256("\n".join(ids).encode()).hexdigest()[:32]
    mailbox = mailbox_id(ctx)
    client = _freescout(ctx)
    store = ctx.idempotency
    claim = store.claim(key)
    if claim.state is KeyState.COMPLETED:
        return str((claim.result or {}).get("conversation_id", "?"))
    now = datetime.now(UTC).isoformat(timespec="seconds")
    incident = min((letter.first_seen for letter in moved), default=now)
    subject = f"mailroom ops note: {pipeline} redrive {key[-12:]}"
    text = "<br>".join(
        [
            f"Incident time (first dead letter): {incident}",
            f"Root cause: {root_cause}",
            f"Resolution: {resolution}",
            f"Messages redriven: {len(moved)} ({pipeline}, stage {ctx.stage})",
            f"Redrive time: {now}",
            f"By: {ctx.actor}",
        ]
    )
    try:
        if claim.state is KeyState.UNCERTAIN:
            found = client.find_conversations(subject=subject)
            if found:
                conversation = str(found[0].get("id", "?"))
                store.complete(key, {"conversation_id": conversation})
                return conversation
        conversation_id, _ = client.create_conversation(
            {
                "type": "email",
                "mailboxId": mailbox,
                "subject": subject,
                "customer": {"email": "mailroom-ops@mailroom.invalid"},
                "status": "closed",
                "threads": [{"type": "note", "text": text, "user": ctx.settings.ops_note_user_id}],
            }
        )
    except Exception as err:
        store.settle_failure(claim, err)
        raise
    store.complete(key, {"conversation_id": str(conversation_id)})
    return str(conversation_id)
