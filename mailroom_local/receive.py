"""``make receive EML=path [TO=a,b] [VERDICTS=...]``: receive a raw email as SES would, locally.

Stores the file under the mail bucket's ``raw/`` in the embedded S3, tells the SES stand-in
it was received (for SendBounce's 24 h rule), and publishes the ``Received`` notification to
the SES topic, with the envelope recipients ``TO`` (default: the file's To and Cc) and the
verdicts ``VERDICTS``: ``spam=FAIL,virus=PASS,spf=FAIL,dkim=GRAY,dmarc=FAIL,policy=reject``;
a value of ``missing`` leaves the field out. Unnamed verdicts are PASS. ``--from`` is the SMTP
envelope sender (SES takes it from the session: default the file's Return-Path, else its
From, else ``<>``, the null sender of bounces). A file that cannot be read as mail is an
error line, never a traceback.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default as default_policy
from email.utils import format_datetime, getaddresses
from pathlib import Path
from typing import Any

import boto3
import requests

VERDICT_FIELDS = {
    "spam": "spamVerdict",
    "virus": "virusVerdict",
    "spf": "spfVerdict",
    "dkim": "dkimVerdict",
    "dmarc": "dmarcVerdict",
}


def parse_verdicts(text: str) -> dict[str, Any]:
    """``VERDICTS`` as the receipt fields of a notification."""
    fields: dict[str, Any] = {field: {"status": "PASS"} for field in VERDICT_FIELDS.values()}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        name, value = name.strip().lower(), value.strip()
        if name in {"policy", "dmarc_policy"}:
            fields["dmarcPolicy"] = value.lower()
        elif name in VERDICT_FIELDS:
            if value.lower() == "missing":
                fields.pop(VERDICT_FIELDS[name], None)
            else:
                fields[VERDICT_FIELDS[name]] = {"status": value.upper()}
        else:
            raise SystemExit(
                f"error: unknown verdict {name!r} (spam, virus, spf, dkim, dmarc, policy)"
            )
    return fields


def envelope_sender(parsed: Any, given: str | None = None) -> str:
    """The MAIL FROM: ``given``, else Return-Path, else From, else ``""`` (SMTP's ``<>``)."""
    if given is not None:
        return given.strip().strip("<>").strip()
    for header in ("Return-Path", "From"):
        try:
            found = [a for _, a in getaddresses([str(parsed[header] or "")]) if a]
        except Exception:  # a malformed header is no sender
            found = []
        if found:
            return found[0]
    return ""


def as_stored(raw: bytes, *, sender: str, recipients: list[str], ses_id: str) -> bytes:
    """``raw`` as SES's S3 action stores it: SES puts its own trace fields on top of every
    message it receives (so even a file without a header block has one)."""
    newline = b"\r\n" if b"\r\n" in raw[:4096] else b"\n"
    stamp = format_datetime(datetime.now(UTC))
    fields = [
        f"Return-Path: <{sender}>",
        f"Received: from localhost (localhost [127.0.0.1]) by inbound-smtp.local.amazonaws.com "
        f"with SMTP id {ses_id} for {recipients[0]}; {stamp}",
        "X-SES-Spam-Verdict: PASS",
        "X-SES-Virus-Verdict: PASS",
    ]
    return b"".join(field.encode() + newline for field in fields) + raw


def notification(
    raw: bytes,
    *,
    bucket: str,
    key: str,
    recipients: list[str],
    verdicts: dict[str, Any],
    sender: str | None = None,
) -> dict[str, Any]:
    parsed = message_from_bytes(raw, policy=default_policy)
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    common = {
        name: str(parsed[header])
        for name, header in (("messageId", "Message-ID"), ("subject", "Subject"), ("date", "Date"))
        if parsed[header]
    }
    return {
        "notificationType": "Received",
        "receipt": {
            "timestamp": now,
            "processingTimeMillis": 100,
            "recipients": recipients,
            **verdicts,
            "action": {"type": "S3", "bucketName": bucket, "objectKey": key},
        },
        "mail": {
            "timestamp": now,
            "source": envelope_sender(parsed, sender),
            "messageId": key.rsplit("/", 1)[1],
            "destination": recipients,
            "headersTruncated": False,
            "headers": [{"name": n, "value": str(v)} for n, v in parsed.items()],
            "commonHeaders": common,
        },
    }


def receive(
    state_dir: Path, eml: Path, *, to: str = "", verdicts: str = "", sender: str | None = None
) -> int:
    """Receive ``eml``; 0, or 1 with one error line."""
    try:
        return _receive(state_dir, eml, to=to, verdicts=verdicts, sender=sender)
    except (OSError, ValueError, LookupError, TypeError) as err:
        print(f"error: {eml}: {type(err).__name__}: {err}")
        return 1


def _receive(state_dir: Path, eml: Path, *, to: str, verdicts: str, sender: str | None) -> int:
    try:
        local = json.loads((state_dir / "local.json").read_text())
    except FileNotFoundError:
        print(f"no local stack found ({state_dir}/local.json); start it with `make run`")
        return 1
    raw = eml.read_bytes()
    parsed = message_from_bytes(raw, policy=default_policy)
    recipients = [a.strip() for a in to.split(",") if a.strip()] or [
        address
        for _, address in getaddresses([str(parsed["To"] or ""), str(parsed["Cc"] or "")])
        if address
    ]
    if not recipients:
        print("error: no recipient: pass TO=address or give the file a To header")
        return 1
    ses_id = secrets.token_hex(20)
    key = f"raw/{ses_id}"
    note = notification(
        raw,
        bucket=local["bucket"],
        key=key,
        recipients=recipients,
        verdicts=parse_verdicts(verdicts),
        sender=sender,
    )
    raw = as_stored(raw, sender=note["mail"]["source"], recipients=recipients, ses_id=ses_id)
    session = boto3.session.Session(
        aws_access_key_id="local", aws_secret_access_key="local", region_name=local["region"]
    )
    endpoint = local["aws_endpoint_url"]
    session.client("s3", endpoint_url=endpoint).put_object(
        Bucket=local["bucket"], Key=key, Body=raw
    )
    if "ses" in local:
        requests.post(
            f"{local['ses']['url']}/_control/received",
            json={"message_id": ses_id, "received_at": datetime.now(UTC).isoformat()},
            timeout=10,
        )
    session.client("sns", endpoint_url=endpoint).publish(
        TopicArn=local["topics"]["ses-inbound"], Message=json.dumps(note)
    )
    print(f"received {eml.name} for {', '.join(recipients)} as SES message {ses_id}")
    return 0
