"""End-to-end probes (F1): real mail through the real paths, checked on a later run.

Inbound: a Postmark-shaped email to the probe address, POSTed to the public inbound webhook
with its Basic credentials from SSM, must become a FreeScout conversation (found by its
unique subject, then deleted so agents never see it). Outbound: a request for Postmark's
test sink, published to the outbound topic as the product would, must reach ``sent`` in the
delivery log. Each probe is an item ``PK = PROBE#<kind>``, ``SK = <sent at>#<probe id>`` in
the state table; a settled probe logs ``ProbeSuccess`` (and ``ProbeLatency``) as EMF.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import requests

from chalicelib.handlers.probe.records import ProbeKind, ProbeRecord, ProbeStatus, ProbeStore
from chalicelib.mail.delivery_log import DeliveryLog, DeliveryStatus
from chalicelib.mail.suppression import normalise
from chalicelib.platform import claimcheck, metrics
from chalicelib.platform.aws import aws_client
from chalicelib.platform.errors import MailroomError, error_class, reason_of
from chalicelib.platform.logging import log_event
from chalicelib.platform.secrets import FREESCOUT_API_KEY, WEBHOOK_BASIC_AUTH, get_secrets
from chalicelib.platform.settings import Settings
from chalicelib.providers.freescout.client import FreeScoutClient

__all__ = [
    "ProbeKind",
    "ProbeNotConfigured",
    "ProbeRecord",
    "ProbeStatus",
    "ProbeSummary",
    "check_probe",
    "check_probes",
    "last_probe",
    "last_result",
    "send_inbound_probe",
    "send_outbound_probe",
]
EVENT_TYPE = "probe"
DEFAULT_FROM = "mailroom-probe@probe.invalid"


class ProbeNotConfigured(MailroomError):
    """A setting the probe needs is not set; names it."""


def _store(settings: Settings, dynamodb: Any | None) -> ProbeStore:
    return ProbeStore(settings.state_table, client=dynamodb or aws_client("dynamodb"))


def new_probe(kind: ProbeKind, now: float | None = None) -> ProbeRecord:
    return ProbeRecord(kind, f"probe-{uuid.uuid4().hex[:20]}", time.time() if now is None else now)


def inbound_payload(record: ProbeRecord, *, to: str, sender: str) -> dict[str, Any]:
    """A Postmark inbound payload for ``record``: what Postmark would post for such mail."""
    return {
        "MessageID": record.probe_id,
        "From": sender,
        "FromName": "mailroom probe",
        "FromFull": {"Email": sender, "Name": "mailroom probe", "MailboxHash": ""},
        "To": to,
        "ToFull": [{"Email": to, "Name": "", "MailboxHash": ""}],
        "OriginalRecipient": to,
        "Subject": record.subject,
        "Date": datetime.fromtimestamp(record.sent_at, UTC).strftime("%a, %d %b %Y %H:%M:%S +0000"),
        "TextBody": "Synthetic probe from mailroom; it is deleted once seen.",
        "Headers": [{"Name": "Message-ID", "Value": f"<{record.probe_id}@mailroom.probe>"}],
        "Attachments": [],
    }


def send_inbound_probe(
    settings: Settings,
    *,
    dynamodb: Any | None = None,
    session: requests.Session | None = None,
    now: float | None = None,
) -> ProbeRecord:
    """POST a probe email to the public inbound webhook and record it (failed at once if the
    webhook does not accept it). Raises ``ProbeNotConfigured`` naming a missing setting."""
    url = _required(settings.probe_webhook_url, "MAILROOM_PROBE_WEBHOOK_URL")
    to = _required(settings.probe_address, "MAILROOM_PROBE_ADDRESS")
    user, _, password = get_secrets().current(WEBHOOK_BASIC_AUTH).partition(":")
    record = new_probe(ProbeKind.INBOUND, now)
    payload = inbound_payload(record, to=to, sender=settings.probe_from or DEFAULT_FROM)
    store = _store(settings, dynamodb)
    # Recorded before posting: a probe mail nobody recorded would never be checked, so never
    # deleted, and would stay in the helpdesk if the function died right after the post.
    store.put(record)
    http = session or requests.Session()
    failed: str | None = None
    try:
        answer = http.post(
            url, json=payload, auth=(user, password), timeout=settings.http_timeout_seconds
        )
        if answer.status_code >= 300:
            failed = f"webhook answered {answer.status_code}"
    except requests.RequestException as err:
        failed = f"webhook unreachable: {error_class(err)}"
    if failed is not None:
        record = _settle(record, ProbeStatus.FAILED, failed)
        store.put(record)
    log_event("probe sent", event_type=EVENT_TYPE, probe=record.kind.value, outcome=record.status)
    return record


def send_outbound_probe(
    settings: Settings, *, dynamodb: Any | None = None, now: float | None = None
) -> ProbeRecord:
    """Publish a request for Postmark's test sink to the outbound topic, as the product does."""
    from chalicelib.mail.outbound import OutboundEmail

    sender = _required(settings.probe_from, "MAILROOM_PROBE_FROM")
    record = new_probe(ProbeKind.OUTBOUND, now)
    email = OutboundEmail.model_validate(
        {
            "correlation_id": record.probe_id,
            "from": sender,
            "to": [settings.probe_outbound_to],
            "subject": record.subject,
            "text_body": "Synthetic probe from mailroom to Postmark's test sink.",
            "tag": "mailroom-probe",
        }
    )
    client = dynamodb or aws_client("dynamodb")
    # Recorded before publishing: a probe that fails to publish is a failed probe, not none.
    _store(settings, client).put(record)
    claimcheck.publish(
        settings.outbound_topic_arn,
        email.model_dump_json(by_alias=True, exclude_defaults=True),
        group_key=normalise(settings.probe_outbound_to),
        deduplication_id=record.probe_id,
    )
    DeliveryLog.for_settings(settings, client).record_quietly(
        record.probe_id, DeliveryStatus.QUEUED
    )
    log_event("probe sent", event_type=EVENT_TYPE, probe=record.kind.value, outcome=record.status)
    return record


def check_probe(
    settings: Settings,
    record: ProbeRecord,
    *,
    dynamodb: Any | None = None,
    freescout: FreeScoutClient | None = None,
    now: float | None = None,
    timeout_seconds: int | None = None,
) -> ProbeRecord:
    """``record`` settled if its mail arrived (or the timeout passed), else unchanged."""
    if record.status is not ProbeStatus.SENT:
        return record
    now = time.time() if now is None else now
    arrived: tuple[float, str] | str | None
    unknown = ""
    try:
        if record.kind is ProbeKind.INBOUND:
            arrived = _find_conversation(settings, record, freescout)
        else:
            arrived = _find_sent(settings, record, dynamodb)
    except Exception as err:  # cannot look: not seen yet, and said so if it times out
        arrived, unknown = None, f" (last check: {reason_of(err)})"
    if isinstance(arrived, str):  # the destination says it will never arrive
        settled = _settle(record, ProbeStatus.FAILED, arrived, now=now)
    elif arrived is not None:
        latency = round(max(0.0, (arrived[0] - record.sent_at) * 1000), 1)
        settled = _settle(record, ProbeStatus.PASSED, arrived[1], now=now, latency_ms=latency)
    elif now - record.sent_at > (timeout_seconds or settings.probe_timeout_seconds):
        waited = int(now - record.sent_at)
        detail = f"not seen within {waited} s{unknown}"
        settled = _settle(record, ProbeStatus.FAILED, detail, now=now)
    else:
        return record
    _store(settings, dynamodb).put(settled)
    return settled


def run_on_demand(
    settings: Settings,
    *,
    timeout: float,
    report: Callable[[str], None],
    poll_seconds: float = 0.5,
) -> bool:
    """Send both probes now and wait until each is settled or ``timeout`` passes, reporting
    each stage as a line (``mailroom probe``, ``make probe``); True if both passed."""
    started = time.monotonic()
    pending = [send_inbound_probe(settings), send_outbound_probe(settings)]
    for record in pending:
        report(f"{record.kind.value:<8} {record.probe_id}: sent ({record.status.value})")
    settled = [r for r in pending if r.status is not ProbeStatus.SENT]
    pending = [r for r in pending if r.status is ProbeStatus.SENT]
    while pending and time.monotonic() - started < timeout:
        time.sleep(poll_seconds)  # the mail travels through other processes
        checked = [check_probe(settings, r, timeout_seconds=int(timeout)) for r in pending]
        settled += [r for r in checked if r.status is not ProbeStatus.SENT]
        pending = [r for r in checked if r.status is ProbeStatus.SENT]
    for record in settled:
        latency = "" if record.latency_ms is None else f" after {record.latency_ms:.0f} ms"
        report(f"{record.kind.value:<8} {record.status.value}{latency}: {record.detail}")
    for record in pending:
        report(f"{record.kind.value:<8} not settled within {timeout:.0f} s")
    return not pending and all(r.status is ProbeStatus.PASSED for r in settled)


def check_probes(
    settings: Settings,
    *,
    dynamodb: Any | None = None,
    freescout: FreeScoutClient | None = None,
    now: float | None = None,
) -> list[ProbeRecord]:
    """Settle every pending probe that can be settled; the ones settled now."""
    store = _store(settings, dynamodb)
    settled: list[ProbeRecord] = []
    for kind in ProbeKind:
        for record in store.recent(kind):
            if record.status is not ProbeStatus.SENT:
                continue
            checked = check_probe(settings, record, dynamodb=dynamodb, freescout=freescout, now=now)
            if checked.status is not ProbeStatus.SENT:
                settled.append(checked)
    return settled


def last_probe(
    settings: Settings, *, dynamodb: Any | None = None
) -> dict[ProbeKind, ProbeRecord | None]:
    """Per kind, the newest settled probe (for ``mailroom health`` and ``probe``)."""
    store = _store(settings, dynamodb)
    found: dict[ProbeKind, ProbeRecord | None] = {}
    for kind in ProbeKind:
        settled = [r for r in store.recent(kind) if r.status is not ProbeStatus.SENT]
        found[kind] = settled[0] if settled else None
    return found


@dataclass(frozen=True)
class ProbeSummary:
    """The newest settled probe of each kind, as ``mailroom health`` shows it."""

    ok: bool
    summary: str
    probes: tuple[ProbeRecord, ...]


def last_result(settings: Settings, *, dynamodb: Any | None = None) -> ProbeSummary | None:
    """Healthy when the newest settled probe of every kind that ran passed; None if none ran."""
    found = [r for r in last_probe(settings, dynamodb=dynamodb).values() if r is not None]
    if not found:
        return None
    parts = []
    for record in found:
        age = int(time.time() - record.sent_at)
        latency = f", {record.latency_ms / 1000:.1f} s" if record.latency_ms is not None else ""
        detail = f" ({record.detail})" if record.status is ProbeStatus.FAILED else ""
        parts.append(f"{record.kind.value} {record.status.value}{latency}{detail}, {age} s ago")
    ok = all(r.status is ProbeStatus.PASSED for r in found)
    return ProbeSummary(ok=ok, summary="; ".join(parts), probes=tuple(found))


def _settle(
    record: ProbeRecord,
    status: ProbeStatus,
    detail: str,
    *,
    now: float | None = None,
    latency_ms: float | None = None,
) -> ProbeRecord:
    """``record`` with its result, published as ``ProbeSuccess``/``ProbeLatency`` (EMF)."""
    settled = replace(
        record,
        status=status,
        detail=detail,
        latency_ms=latency_ms,
        checked_at=time.time() if now is None else now,
    )
    measured = {metrics.PROBE_SUCCESS: 1.0 if status is ProbeStatus.PASSED else 0.0}
    if latency_ms is not None:
        measured[metrics.PROBE_LATENCY] = round(latency_ms, 1)
    log_event(
        "probe result",
        event_type=EVENT_TYPE,
        probe=record.kind.value,
        outcome=status.value,
        reason=detail if status is ProbeStatus.FAILED else None,
        latency_ms=None if latency_ms is None else round(latency_ms, 1),
        measured=measured,
    )
    return settled


class ProbeFreeScout(FreeScoutClient):
    """The FreeScout client plus the delete the probe cleans up with."""

    def delete_conversation(self, conversation_id: int) -> None:
        """DELETE /api/conversations/{id} (moves it to Deleted; FreeScout answers 204)."""
        self._request("DELETE", f"/api/conversations/{conversation_id}")


def _freescout(settings: Settings) -> ProbeFreeScout:
    return ProbeFreeScout(
        settings.freescout_url,
        get_secrets().current(FREESCOUT_API_KEY),
        timeout=settings.http_timeout_seconds,
    )


def _find_conversation(
    settings: Settings, record: ProbeRecord, client: FreeScoutClient | None
) -> tuple[float, str] | None:
    """(created at, detail) of the probe's conversation, deleted once found; None if absent."""
    freescout = client or _freescout(settings)
    found = freescout.find_conversations(subject=record.subject)
    if not found:
        return None
    conversation = found[0]
    created = _epoch(conversation.get("createdAt"))
    conversation_id = int(conversation.get("id", 0))
    if isinstance(freescout, ProbeFreeScout):
        try:
            freescout.delete_conversation(conversation_id)
        except Exception as err:  # the probe passed; a leftover conversation is only noise
            log_event("probe cleanup failed", event_type=EVENT_TYPE, error_class=error_class(err))
    return (created or time.time(), f"conversation {conversation_id}")


def _find_sent(
    settings: Settings, record: ProbeRecord, dynamodb: Any | None
) -> tuple[float, str] | str | None:
    """(sent at, detail) once the delivery log says ``sent``; a reason if it never will."""
    log = DeliveryLog.for_settings(settings, dynamodb or aws_client("dynamodb"))
    for event in log.history(record.probe_id):
        if event.status is DeliveryStatus.SENT:
            return (_epoch(event.at) or time.time(), "sent")
        if event.status in {DeliveryStatus.DEAD_LETTERED, DeliveryStatus.SUPPRESSED}:
            return f"delivery log says {event.status.value}"
    return None


def _epoch(value: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None


def _required(value: str | None, variable: str) -> str:
    if not value:
        raise ProbeNotConfigured(f"{variable} is not set")
    return value
