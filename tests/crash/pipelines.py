"""The pipelines the crash harness drives: how a fresh message enters, and what counts as its
one effect. A new pipeline is one ``Pipeline`` row (and its queue in ``harness.HANDLERS``)."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

from chalicelib.handlers import outbound_api, postmark_events, probe, webhooks
from chalicelib.handlers.probe import checks
from chalicelib.handlers.probe.records import SUBJECT, ProbeKind, ProbeStatus, ProbeStore
from chalicelib.mail.suppression import SuppressionList
from chalicelib.platform.auth import sign
from chalicelib.platform.settings import get_settings
from tests.crash.harness import (
    GMAIL_MAILBOX,
    PROBE_ADDRESS,
    REGION,
    SIGNING_SECRET,
    WEBHOOK_PASSWORD,
    WEBHOOK_USER,
    Entry,
    HttpEntry,
    Pipeline,
    QueueEntry,
    ScheduledEntry,
    World,
)
from tests.ses.conftest import mime, notification, sns_envelope

EVENTS = Path(__file__).resolve().parents[1] / "events"
FREESCOUT_ADDRESS = "support@crash.test"
GMAIL_ADDRESS = "team@gmail-route.test"
RELABELLED_ADDRESS = "relabelled@gmail-route.test"
BOUNCE_ADDRESS = "nobody@bounce.test"


def provider_effects(world: World, run_id: str) -> dict[str, int]:
    """Every effect a provider holds that must happen once: FreeScout threads, Postmark
    sends, Gmail imports, SES bounces (totals; the harness takes the difference)."""
    conversations = world.standin("freescout", "/_control/conversations")["conversations"]
    return {
        "freescout threads": sum(len(c["_embedded"]["threads"]) for c in conversations),
        "postmark sends": len(world.standin("postmark", "/_control/messages")["messages"]),
        "gmail imports": sum(world.standin("gmail", "/_control/mailboxes").values()),
        "ses bounces": len(world.standin("ses", "/_control/bounces")["bounces"]),
    }


def _basic() -> dict[str, str]:
    token = base64.b64encode(f"{WEBHOOK_USER}:{WEBHOOK_PASSWORD}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}


def _inbound_body(run_id: str) -> bytes:
    payload = json.loads((EVENTS / "postmark_inbound_basic.json").read_text())
    payload.update(
        MessageID=f"pm-{run_id}",
        To=FREESCOUT_ADDRESS,
        ToFull=[{"Email": FREESCOUT_ADDRESS, "Name": "", "MailboxHash": ""}],
        OriginalRecipient=FREESCOUT_ADDRESS,
        Headers=[{"Name": "Message-ID", "Value": f"<{run_id}@mail.example.org>"}],
    )
    return json.dumps(payload).encode()


def _webhook(world: World, run_id: str) -> HttpEntry:
    world.put_route(FREESCOUT_ADDRESS, "freescout", "1")
    body = _inbound_body(run_id)
    return HttpEntry(lambda: webhooks.postmark_inbound(_basic(), body))


def _bridge(world: World, run_id: str) -> Entry:
    assert _webhook(world, run_id).call().status == 200
    return QueueEntry("inbound-bridge")


def _outbound_body(run_id: str) -> bytes:
    request = {
        "correlation_id": f"order-{run_id}",
        "from": "Shop <shop@example.com>",
        "to": f"ann-{run_id}@example.org",
        "subject": "Your receipt",
        "text_body": "Thanks for your order.",
    }
    return json.dumps(request).encode()


def _outbound_api(world: World, run_id: str) -> HttpEntry:
    body = _outbound_body(run_id)

    def submit() -> Any:
        headers = {"Content-Type": "application/json", "X-Mailroom-Signature": ""}
        headers["X-Mailroom-Signature"] = sign(body, SIGNING_SECRET)
        return outbound_api.submit(headers, body)

    return HttpEntry(submit)


def _sender(world: World, run_id: str) -> Entry:
    assert _outbound_api(world, run_id).call().status < 300
    return QueueEntry("outbound-sender")


def _ses_mail(world: World, run_id: str, recipient: str) -> dict[str, Any]:
    """Raw MIME under raw/ and SES's notification queued for the router."""
    key = f"raw/{run_id}{uuid.uuid4().hex[:8]}"
    message_id = f"<{run_id}@sender.example>"
    raw = mime(message_id=message_id, to=recipient)
    boto3.client("s3", region_name=REGION).put_object(Bucket=world.bucket, Key=key, Body=raw)
    note = notification(bucket=world.bucket, key=key, recipients=[recipient], message_id=message_id)
    boto3.client("sqs", region_name=REGION).send_message(
        QueueUrl=world.queues["ses-inbound"].url, MessageBody=sns_envelope(note)
    )
    return note


def _router(world: World, run_id: str) -> Entry:
    world.put_route(GMAIL_ADDRESS, "gmail", GMAIL_MAILBOX)
    _ses_mail(world, run_id, GMAIL_ADDRESS)
    return QueueEntry("ses-inbound")


def _forwarder(world: World, run_id: str) -> Entry:
    _router(world, run_id)
    assert world.invoke("ses-inbound")
    return QueueEntry("gmail-forwarder")


def _forwarder_relabelled(world: World, run_id: str) -> Entry:
    """Routed with a label the mailbox lacks, the route fixed before the import: the forwarder
    is refused, asks the route again and imports with the fixed labels (two imports)."""
    world.put_route(RELABELLED_ADDRESS, "gmail", f"{GMAIL_MAILBOX};labels=INBOX,Label_404")
    _ses_mail(world, run_id, RELABELLED_ADDRESS)
    assert world.invoke("ses-inbound")
    world.put_route(RELABELLED_ADDRESS, "gmail", f"{GMAIL_MAILBOX};labels=INBOX,STARRED")
    return QueueEntry("gmail-forwarder")


def _bouncer(world: World, run_id: str) -> Entry:
    world.put_route("*@bounce.test", "bounce")
    note = _ses_mail(world, run_id, BOUNCE_ADDRESS)
    world.standin_post(
        "ses",
        "/_control/received",
        {"message_id": note["mail"]["messageId"], "received_at": datetime.now(UTC).isoformat()},
    )
    assert world.invoke("ses-inbound")
    return QueueEntry("bouncer")


def _bounced_address(run_id: str) -> str:
    return f"ann-{run_id}@example.org"


def _events(world: World, run_id: str) -> Entry:
    event = json.loads((EVENTS / "postmark_event_bounce.json").read_text())
    event.update(Email=_bounced_address(run_id), MessageID=str(uuid.uuid4()))
    body = json.dumps(event).encode()
    return HttpEntry(lambda: postmark_events.postmark_events(_basic(), body))


def _suppressions(world: World, run_id: str) -> dict[str, int]:
    store = SuppressionList(
        f"mailroom-{world.stage}-state", client=boto3.client("dynamodb", region_name=REGION)
    )
    found = store.suppressed([_bounced_address(run_id)])
    return {"suppressions": len(found), **provider_effects(world, run_id)}


def _big_webhook(world: World, run_id: str) -> HttpEntry:
    """An inbound email over SNS's 256 KB limit: the webhook parks it in S3 (claim check)."""
    world.put_route(FREESCOUT_ADDRESS, "freescout", "1")
    payload = json.loads(_inbound_body(run_id))
    content = base64.b64encode(b"%PDF-1.4\n" + b"0" * 300_000).decode()
    payload["Attachments"] = [
        {"Name": "big.pdf", "Content": content, "ContentType": "application/pdf"}
    ]
    body = json.dumps(payload).encode()
    return HttpEntry(lambda: webhooks.postmark_inbound(_basic(), body))


def _ses_to_freescout(world: World, run_id: str) -> Entry:
    world.put_route(FREESCOUT_ADDRESS, "freescout", "1")
    _ses_mail(world, run_id, FREESCOUT_ADDRESS)
    return QueueEntry("ses-inbound")


def _bridge_from_ses(world: World, run_id: str) -> Entry:
    _ses_to_freescout(world, run_id)
    assert world.invoke("ses-inbound")
    return QueueEntry("inbound-bridge")


def _probe(world: World, run_id: str) -> Entry:
    world.put_route(PROBE_ADDRESS, "freescout", "1")
    return ScheduledEntry(probe.run)


def _probe_outcome(world: World, run_id: str) -> dict[str, int]:
    """The next scheduled run's check first (it deletes each probe conversation it finds);
    then the probe's one effect, that an inbound probe passed (a retried invocation sends a
    probe of its own: one passed or two, the probe reported), and any probe conversation
    left in the helpdesk, which nothing will ever delete (an effect too many)."""
    settings = get_settings()
    checks.check_probes(settings)
    store = ProbeStore(settings.state_table, client=world.dynamodb)
    recent = store.recent(ProbeKind.INBOUND, limit=1000)
    # Called before the run (remember what exists) and after it (judge what is new).
    earlier = _PROBES_BEFORE.setdefault(run_id, {r.probe_id for r in recent})
    passed = [r for r in recent if r.probe_id not in earlier and r.status is ProbeStatus.PASSED]
    prefix = SUBJECT.split("{", 1)[0]
    conversations = world.standin("freescout", "/_control/conversations")["conversations"]
    return {
        "inbound probe passed": min(1, len(passed)),
        "probe conversations left": sum(
            1 for c in conversations if str(c.get("subject", "")).startswith(prefix)
        ),
    }


_PROBES_BEFORE: dict[str, set[str]] = {}


# One small message per pipeline: what `make test` crashes at every distinct point.
PIPELINES = [
    Pipeline("postmark inbound webhook", _webhook, provider_effects),
    Pipeline("inbound bridge", _bridge, provider_effects),
    Pipeline("outbound api", _outbound_api, provider_effects),
    Pipeline("outbound sender", _sender, provider_effects),
    Pipeline("ses router", _router, provider_effects),
    Pipeline("gmail forwarder", _forwarder, provider_effects),
    Pipeline("gmail forwarder, label fixed in the route", _forwarder_relabelled, provider_effects),
    Pipeline("bouncer", _bouncer, provider_effects),
    Pipeline("postmark events webhook", _events, _suppressions),
    Pipeline("probe", _probe, _probe_outcome),
]
# And the variants only the bench runs: claim-checked mail, SES mail to FreeScout.
ALL_PIPELINES = [
    *PIPELINES,
    Pipeline("postmark inbound webhook, claim-checked", _big_webhook, provider_effects),
    Pipeline("ses router to freescout", _ses_to_freescout, provider_effects),
    Pipeline("inbound bridge, ses mail", _bridge_from_ses, provider_effects),
]
