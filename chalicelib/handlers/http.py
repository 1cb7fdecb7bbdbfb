"""What every HTTP entry point shares: the reply type, error bodies, the size limit, keeping
refused bodies in S3, and the guard that turns any failure into a 5xx instead of a trace.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from chalicelib.auth import basic_auth_ok, header
from chalicelib.clients.aws import aws_client
from chalicelib.errors import MailroomError, error_class
from chalicelib.logging import hash_id, log_event
from chalicelib.secrets import WEBHOOK_BASIC_AUTH, SecretUnavailable, get_secrets
from chalicelib.settings import get_settings

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class HttpReply:
    """A JSON response; app.py turns it into a Chalice ``Response``."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class Refused(Exception):
    """Ends a request early with ``reply`` (a 4xx the caller must fix)."""

    def __init__(self, reply: HttpReply) -> None:
        super().__init__(reply.body.get("error", "refused"))
        self.reply = reply


def error(status: int, code: str, message: str, **details: Any) -> HttpReply:
    """A JSON error body: ``{"error": code, "message": message, ...details}``."""
    return HttpReply(status, {"error": code, "message": message, **details})


def guarded(
    event_type: str, handle: Callable[[Mapping[str, str], bytes], HttpReply]
) -> Callable[[Mapping[str, str], bytes], HttpReply]:
    """``handle`` that never raises: 4xx for ``Refused``, 503 when we or AWS are down, 500 for
    bugs.

    Every 5xx is retried by the caller (Postmark retries for hours), so nothing is lost.
    """

    def run(headers: Mapping[str, str], body: bytes) -> HttpReply:
        try:
            return handle(headers, body)
        except Refused as refused:
            return refused.reply
        except SecretUnavailable as err:
            log_event("secrets unavailable", event_type=event_type, error_class=error_class(err))
            return error(503, "unavailable", "credentials store unavailable; retry later")
        except MailroomError as err:
            log_event("request failed", event_type=event_type, error_class=error_class(err))
            return error(503, "unavailable", "temporarily unavailable; retry later")
        except Exception as err:
            from botocore.exceptions import BotoCoreError, ClientError

            if isinstance(err, BotoCoreError | ClientError):  # AWS said no: an outage
                log_event("aws unavailable", event_type=event_type, error_class=error_class(err))
                return error(503, "unavailable", "storage unavailable; retry later")
            log_event("request crashed", event_type=event_type, error_class=error_class(err))
            return error(500, "internal_error", "unexpected error; retry later")

    return run


def check_size(headers: Mapping[str, str], body: bytes) -> None:
    """Refuse with 413 a body (or a declared Content-Length) over the configured limit."""
    limit = get_settings().max_webhook_bytes
    declared = header(headers, "Content-Length")
    if len(body) > limit or (declared is not None and declared.isdigit() and int(declared) > limit):
        raise Refused(error(413, "payload_too_large", f"body exceeds {limit} bytes"))


def require_basic_auth(headers: Mapping[str, str], body: bytes) -> None:
    """Size check, then Postmark's Basic credentials (current or previous); a 401 keeps the
    body (size-capped) under ``quarantine/``."""
    check_size(headers, body)
    if not basic_auth_ok(headers, get_secrets().values(WEBHOOK_BASIC_AUTH)):
        keep("quarantine", body[: get_settings().quarantine_max_bytes], reason="unauthenticated")
        raise Refused(error(401, "unauthorized", "missing or wrong credentials"))


def parse_json(body: bytes, *, keep_rejected: bool) -> Any:
    """The decoded body, or a 400 (the body kept under ``rejected/`` if asked)."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        if keep_rejected:
            keep("rejected", body, reason="invalid JSON")
        raise Refused(error(400, "invalid_json", "body is not valid JSON")) from None


def validate(model: type[M], decoded: Any, body: bytes, *, keep_rejected: bool) -> M:
    """``decoded`` as ``model``, or a 400 naming every invalid field."""
    try:
        return model.model_validate(decoded)
    except ValidationError as err:
        fields = sorted({".".join(str(p) for p in e["loc"]) or "(body)" for e in err.errors()})
        if keep_rejected:
            keep("rejected", body, reason="invalid payload")
        raise Refused(
            error(400, "invalid_payload", "payload fails validation", fields=fields)
        ) from None


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
    log_event("webhook body kept", reason=reason, message_id_hash=hash_id(digest))
