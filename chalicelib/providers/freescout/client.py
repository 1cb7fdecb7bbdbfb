"""FreeScout API client (API & Webhooks module): conversations and threads.

One ``_request`` applies auth, timeout and error mapping: network errors, timeouts and 5xx
are transient (500/502/504 and timeouts may have acted); 401 is a configuration error; 400
and other 4xx are permanent. FreeScout has no idempotency key, so callers keep their own
message-id → conversation map and prove an uncertain attempt with ``conversation``.
"""

from __future__ import annotations

from typing import Any

import requests

from chalicelib.platform.errors import (
    ProviderAuthError,
    ProviderPermanentError,
    ProviderTransientError,
)
from chalicelib.platform.http import JsonHttpClient

PROVIDER = "freescout"
# Answers written after the server may have committed: a 500 or a gateway timeout can come
# after the conversation was stored. 503 and 429 are refusals before any work.
MAY_HAVE_ACTED = frozenset({500, 502, 504})


class FreeScoutClient(JsonHttpClient):
    """A small client over an injected ``requests.Session``."""

    provider = PROVIDER

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        session: requests.Session | None = None,
        timeout: float = 10.0,
    ) -> None:
        auth = {"X-FreeScout-API-Key": api_key}
        super().__init__(base_url, auth=auth, session=session, timeout=timeout)

    def create_conversation(self, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """POST /api/conversations; the id (from ``Resource-ID``) and the body if any."""
        response = self._request("POST", "/api/conversations", json=payload)
        return _resource_id(response), _json_or_empty(response)

    def add_thread(
        self, conversation_id: int, thread: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        """POST /api/conversations/{id}/threads; the thread id and the body if any."""
        response = self._request(
            "POST", f"/api/conversations/{conversation_id}/threads", json=thread
        )
        return _resource_id(response), _json_or_empty(response)

    def conversation(self, conversation_id: int) -> dict[str, Any] | None:
        """GET /api/conversations/{id}?embed=threads; None if it does not exist."""
        try:
            response = self._request(
                "GET", f"/api/conversations/{conversation_id}", params={"embed": "threads"}
            )
        except ProviderPermanentError as err:
            if err.status_code == 404:
                return None
            raise
        return _json_or_empty(response)

    def find_conversations(self, **filters: str | int) -> list[dict[str, Any]]:
        """GET /api/conversations with ``filters``; the embedded conversations."""
        params = {k: str(v) for k, v in filters.items()}
        body = _json_or_empty(self._request("GET", "/api/conversations", params=params))
        found = body.get("_embedded", {}).get("conversations", [])
        return list(found) if isinstance(found, list) else []

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        response = self._send(method, path, **kwargs)
        status = response.status_code
        if status < 400:
            return response
        message = _error_message(response)
        if status == 401:
            raise ProviderAuthError(
                "API key rejected", provider=PROVIDER, status_code=status, excerpt=response.text
            )
        if status >= 500 or status in {408, 429}:
            raise ProviderTransientError(
                f"server error: {message}",
                provider=PROVIDER,
                status_code=status,
                excerpt=response.text,
                may_have_acted=status in MAY_HAVE_ACTED,
            )
        raise ProviderPermanentError(
            f"request rejected: {message}",
            provider=PROVIDER,
            status_code=status,
            excerpt=response.text,
        )


def _resource_id(response: requests.Response) -> int:
    raw = response.headers.get("Resource-ID") or str(_json_or_empty(response).get("id", ""))
    try:
        return int(raw)
    except ValueError:
        raise ProviderTransientError(
            "created, but no Resource-ID in the answer",
            provider=PROVIDER,
            status_code=response.status_code,
            may_have_acted=True,
        ) from None


def _json_or_empty(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_message(response: requests.Response) -> str:
    """FreeScout's message plus the failing field paths (never the rejected values)."""
    body = _json_or_empty(response)
    message = str(body.get("message", "")) or f"HTTP {response.status_code}"
    errors = body.get("_embedded", {}).get("errors", [])
    details = [f"{e.get('path')}: {e.get('message')}" for e in errors if isinstance(e, dict)]
    return "; ".join([message, *details])[:300]
