"""Postmark Email API client: single and batch sends, and the outbound message search.

Classification follows Postmark's rules (never infer from the HTTP status alone; the body's
ErrorCode decides): HTTP 429/500/503, ErrorCode 100 and network errors are transient
(a 500, a timeout or an unreadable answer may have sent the message);
401 or ErrorCode 10 is a configuration error; ErrorCode 406 names inactive recipients;
other 422s are permanent. A 403 with an HTML body comes from the network layer in front of
Postmark, not from Postmark, and is transient. Postmark has no idempotency key, so callers
search by their correlation id before re-sending after an ambiguous failure.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import requests

from chalicelib.platform.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderPermanentError,
    ProviderTransientError,
)
from chalicelib.platform.http import JsonHttpClient

PROVIDER = "postmark"
BATCH_LIMIT = 500
# Postmark takes at most 50 MB per batch request; stay clear of it (and of JSON overhead).
BATCH_BYTES = 40_000_000
INACTIVE_RECIPIENT = 406
_TRANSIENT_CODES = {100, 429}
_INACTIVE = re.compile(r"Found inactive addresses: (.+?)\.(?:\s|$)")


class InactiveRecipients(ProviderPermanentError):
    """Postmark refused the message because recipients are inactive (ErrorCode 406)."""

    def __init__(self, reason: str, *, addresses: list[str], **context: Any) -> None:
        super().__init__(reason, provider=PROVIDER, **context)
        self.addresses = addresses


@dataclass(frozen=True)
class SendResult:
    """One message's answer: accepted with a MessageID, or the error it would raise."""

    message_id: str | None
    error: ProviderError | None = None
    submitted_at: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def inactive_addresses(message: str) -> list[str]:
    """The addresses in Postmark's "Found inactive addresses: a, b." sentence."""
    found = _INACTIVE.search(message)
    if found is None:
        return []
    return [a.strip().lower() for a in found.group(1).split(",") if a.strip()]


def classify(error_code: int, message: str, *, status: int | None = None) -> ProviderError:
    """The error for a body-level ErrorCode (non-zero)."""
    context: dict[str, Any] = {"status_code": status, "error_code": error_code}
    if error_code in _TRANSIENT_CODES:
        return ProviderTransientError(message[:200], provider=PROVIDER, **context)
    if error_code == 10:
        return ProviderAuthError("server token rejected", provider=PROVIDER, **context)
    if error_code == INACTIVE_RECIPIENT:
        return InactiveRecipients(
            "inactive recipients", addresses=inactive_addresses(message), **context
        )
    return ProviderPermanentError(message[:200], provider=PROVIDER, **context)


def _chunks(messages: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """``messages`` in order, split so no request exceeds Postmark's batch limits."""
    chunks: list[list[dict[str, Any]]] = []
    size = 0
    for message in messages:
        length = len(json.dumps(message))
        if not chunks or len(chunks[-1]) >= BATCH_LIMIT or size + length > BATCH_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(message)
        size += length
    return chunks


class PostmarkClient(JsonHttpClient):
    """A small client over an injected ``requests.Session``."""

    provider = PROVIDER

    def __init__(
        self,
        token: str,
        *,
        session: requests.Session | None = None,
        base_url: str = "https://api.postmarkapp.com",
        timeout: float = 10.0,
    ) -> None:
        auth = {"X-Postmark-Server-Token": token}
        super().__init__(base_url, auth=auth, session=session, timeout=timeout)

    def send(self, message: dict[str, Any]) -> SendResult:
        """POST /email; raises on any failure."""
        body = self._request("POST", "/email", json=message)
        return SendResult(str(body["MessageID"]), submitted_at=str(body.get("SubmittedAt", "")))

    def send_batch(self, messages: list[dict[str, Any]]) -> list[SendResult]:
        """POST /email/batch in chunks (500 messages, 40 MB); one result per message, in order.

        HTTP 200 can still carry per-message failures, so every element's ErrorCode is read;
        a chunk whose call failed gives that error for each of its messages.
        """
        results: list[SendResult] = []
        for chunk in _chunks(messages):
            try:
                answers = self._request("POST", "/email/batch", json=chunk)
                if not isinstance(answers, list) or len(answers) != len(chunk):
                    raise ProviderTransientError(
                        "batch answer does not match the request",
                        provider=PROVIDER,
                        may_have_acted=True,
                    )
            except ProviderError as err:
                # Earlier chunks were answered: their results must not be lost with this one.
                results.extend(SendResult(None, err) for _ in chunk)
                continue
            for answer in answers:
                code = int(answer.get("ErrorCode", 0))
                if code == 0:
                    results.append(
                        SendResult(
                            str(answer["MessageID"]),
                            submitted_at=str(answer.get("SubmittedAt", "")),
                        )
                    )
                else:
                    results.append(SendResult(None, classify(code, str(answer.get("Message", "")))))
        return results

    def search_outbound(self, metadata: dict[str, str], *, count: int = 50) -> list[dict[str, Any]]:
        """GET /messages/outbound filtered by metadata; the messages found."""
        params: dict[str, str | int] = {"count": count, "offset": 0}
        params.update({f"metadata_{k}": v for k, v in metadata.items()})
        body = self._request("GET", "/messages/outbound", params=params)
        messages = body.get("Messages", []) if isinstance(body, dict) else []
        return list(messages)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        if status == 200 and body is not None:
            return body
        excerpt = response.text[:300]
        if 200 <= status < 300:
            raise ProviderTransientError(
                "accepted, but the answer is unreadable",
                provider=PROVIDER,
                status_code=status,
                excerpt=excerpt,
                may_have_acted=True,
            )
        if isinstance(body, dict) and "ErrorCode" in body and status in {401, 422}:
            raise classify(int(body["ErrorCode"]), str(body.get("Message", "")), status=status)
        if status == 401:
            raise ProviderAuthError("server token rejected", provider=PROVIDER, status_code=401)
        if status in {403, 429} or status >= 500:
            # 403 with an HTML body is the network layer in front of Postmark, not Postmark.
            raise ProviderTransientError(
                f"HTTP {status}",
                provider=PROVIDER,
                status_code=status,
                excerpt=excerpt,
                # Postmark: a 500 "message is usually lost", but not always; 429, 503 and the
                # network layer's 403 answer before Postmark takes the message.
                may_have_acted=status not in {403, 429, 503},
            )
        raise ProviderPermanentError(
            f"HTTP {status}", provider=PROVIDER, status_code=status, excerpt=excerpt
        )
