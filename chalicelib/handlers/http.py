"""What every HTTP entry point shares: the reply type, error bodies, the size limit, parsing with
the queue consumers' own parsers, keeping refused bodies in S3, and the guard that answers
every request (never a trace) and logs it as one line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from chalicelib.platform.auth import basic_auth_ok, header
from chalicelib.platform.aws import aws_client
from chalicelib.platform.errors import ConfigurationError, MailroomError, access_denied, error_class
from chalicelib.platform.logging import hash_id, log_event
from chalicelib.platform.payload import PayloadRejected
from chalicelib.platform.secrets import WEBHOOK_BASIC_AUTH, SecretUnavailable, get_secrets
from chalicelib.platform.settings import get_settings

T = TypeVar("T")

# Characters SQS refuses in a message body (and so in what SNS delivers to it).
_NOT_SQS_SAFE = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class HttpReply:
    """A JSON response; app.py turns it into a Chalice ``Response``.

    ``reason`` (a constant string) and the ids are for the request's log line only.
    """

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    message_id: str | None = None
    correlation_id: str | None = None
    action: str | None = None


class Refused(Exception):
    """Ends a request early with ``reply`` (a 4xx the caller must fix)."""

    def __init__(self, reply: HttpReply) -> None:
        super().__init__(reply.body.get("error", "refused"))
        self.reply = reply


def error(status: int, code: str, message: str, *, reason: str = "", **details: Any) -> HttpReply:
    """A JSON error body: ``{"error": code, "message": message, ...details}``."""
    return HttpReply(status, {"error": code, "message": message, **details}, reason=reason or code)


def guarded(
    event_type: str, handle: Callable[[Mapping[str, str], bytes], HttpReply]
) -> Callable[[Mapping[str, str], bytes], HttpReply]:
    """``handle`` that never raises: 4xx for ``Refused``, 503 when we or AWS are down or a
    setting is missing, 500 for bugs; each answer logged as one line with its status, reason
    and measured duration.

    Every 5xx is retried by the caller (Postmark retries for hours), so nothing is lost.
    """

    def run(headers: Mapping[str, str], body: bytes) -> HttpReply:
        started = time.perf_counter()
        failure: BaseException | None = None
        try:
            reply = handle(headers, body)
        except Refused as refused:
            reply = refused.reply
        except Exception as err:
            failure = err
            reply = _failure_reply(err)
        _log_answer(event_type, reply, started, failure)
        return reply

    return run


def _failure_reply(err: Exception) -> HttpReply:
    denied = access_denied(err)
    if denied is not None:  # the sender retries; a person fixes the policy meanwhile (F19)
        return error(
            503, "unavailable", "temporarily unavailable; retry later", reason=denied.reason
        )
    if isinstance(err, SecretUnavailable):
        return error(
            503,
            "unavailable",
            "credentials store unavailable; retry later",
            reason="secrets_unavailable",
        )
    if isinstance(err, MailroomError):
        return error(503, "unavailable", "temporarily unavailable; retry later")
    if isinstance(err, ConfigurationError):
        # Our misconfiguration, not the caller's fault nor a bug: 503, so Postmark keeps the
        # message until the setting is fixed; the log names the variable (a constant).
        return error(
            503,
            "unavailable",
            "service misconfigured; retry later",
            reason=f"configuration error: {err.variable}",
        )
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(err, BotoCoreError | ClientError):  # AWS said no: an outage
        # The AWS error code goes into the reason, for the failures-by-error-class query.
        code = err.response.get("Error", {}).get("Code") if isinstance(err, ClientError) else None
        return error(
            503,
            "unavailable",
            "storage unavailable; retry later",
            reason=f"aws_unavailable ({code})" if code else "aws_unavailable",
        )
    return error(500, "internal_error", "unexpected error; retry later")


def _log_answer(
    event_type: str, reply: HttpReply, started: float, failure: BaseException | None
) -> None:
    """The one line per answered request (the edge's "message outcome")."""
    if reply.status < 300:
        outcome = str(reply.body.get("status", "accepted"))
    else:
        outcome = "refused" if reply.status < 500 else "unavailable"
    crashed = reply.status >= 500 and reply.status != 503
    level = logging.ERROR if crashed else logging.WARNING if reply.status >= 500 else logging.INFO
    log_event(
        "message outcome",
        level=level,
        event_type=event_type,
        status_code=reply.status,
        reason=reply.reason or outcome,
        outcome="crashed" if crashed else outcome,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
        message_id_hash=hash_id(reply.message_id),
        correlation_id=reply.correlation_id,
        action=reply.action,
        error_class=error_class(failure) if failure is not None else None,
    )


def check_size(headers: Mapping[str, str], body: bytes) -> None:
    """Refuse with 413 a body (or a declared Content-Length) over the configured limit."""
    limit = get_settings().max_webhook_bytes
    declared = header(headers, "Content-Length") or ""
    # ASCII digits only (int() also takes "¹²" and "1_0"); a 20-digit length is over any limit.
    if declared.isascii() and declared.isdigit() and len(declared) > 20:
        declared = str(limit + 1)
    if len(body) > limit or (declared.isascii() and declared.isdigit() and int(declared) > limit):
        raise Refused(error(413, "payload_too_large", f"body exceeds {limit} bytes"))


def require_basic_auth(headers: Mapping[str, str], body: bytes) -> None:
    """Size check, then Postmark's Basic credentials (current or previous); a 401 keeps the
    body (size-capped) under ``quarantine/``."""
    check_size(headers, body)
    if not basic_auth_ok(headers, get_secrets().values(WEBHOOK_BASIC_AUTH)):
        keep("quarantine", body[: get_settings().quarantine_max_bytes], reason="unauthenticated")
        raise Refused(error(401, "unauthorized", "missing or wrong credentials"))


def parse_body(parse: Callable[[bytes], T], body: bytes, *, keep_rejected: bool) -> T:
    """``body`` through ``parse`` (the queue consumer's own parser), or a 400 naming the
    problem: ``invalid_encoding``, ``invalid_json``, ``nested_too_deeply`` or
    ``invalid_payload`` with ``fields``, never their values (the body kept under ``rejected/``
    if asked)."""
    try:
        return parse(body)
    except PayloadRejected as err:
        if keep_rejected:
            keep("rejected", body, reason=err.code)
        details: dict[str, Any] = {"fields": err.fields} if err.code == "invalid_payload" else {}
        raise Refused(error(400, err.code, err.reason, **details)) from None


def sqs_safe(text: str) -> str:
    """``text`` (JSON) as it can travel through SNS and SQS: unchanged unless it holds a
    character SQS refuses, then re-encoded with ASCII escapes (the same JSON value)."""
    if _NOT_SQS_SAFE.search(text) is None:
        return text
    return json.dumps(json.loads(text))


def keep(prefix: str, body: bytes, *, reason: str) -> None:
    """Store a body we did not accept, keyed by its SHA-256 so retries overwrite, not pile up."""
    settings = get_settings()
    digest = hashlib.sha256(body).hexdigest()
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    key = f"{prefix}/{day}/{digest}.json" if prefix == "quarantine" else f"{prefix}/{digest}.json"
    try:
        aws_client("s3").put_object(
            Bucket=settings.mail_bucket, Key=key, Body=body, Metadata={"reason": reason}
        )
    except Exception as err:
        # The answer to the caller is what matters; it retries and we keep it next time.
        log_event("could not keep body", reason=reason, error_class=error_class(err))
        return
    log_event(
        "webhook body kept", level=logging.DEBUG, reason=reason, message_id_hash=hash_id(digest)
    )
