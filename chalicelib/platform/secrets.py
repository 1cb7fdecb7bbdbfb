"""Secrets from SSM Parameter Store (SecureString), read lazily and cached briefly.

Each secret may have a ``-previous`` twin so a rotation drops nothing: callers get the
current value and, while it exists, the previous one, and accept either.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from chalicelib.platform.aws import aws_client
from chalicelib.platform.errors import TransientError
from chalicelib.platform.settings import get_settings

WEBHOOK_BASIC_AUTH = "postmark/webhook-basic-auth"
FREESCOUT_API_KEY = "freescout/api-key"
POSTMARK_SERVER_TOKEN = "postmark/server-token"  # noqa: S105 - a parameter name
OUTBOUND_SIGNING_SECRET = "outbound/signing-secret"  # noqa: S105 - a parameter name
PREVIOUS_SUFFIX = "-previous"


class SecretUnavailable(TransientError):
    """SSM could not be read, or the parameter is not set; the caller answers 5xx or retries."""


@dataclass
class _Cached:
    values: tuple[str, ...]
    fetched_at: float


class SecretCache:
    """Current and previous values of named parameters, cached for ``ttl_seconds``."""

    def __init__(self, *, ttl_seconds: int, client: Any | None = None) -> None:
        self._ttl = ttl_seconds
        self._client = client
        self._cache: dict[str, _Cached] = {}

    def values(self, name: str) -> tuple[str, ...]:
        """The valid values of ``name``: current first, then previous if set."""
        cached = self._cache.get(name)
        if cached is not None and time.monotonic() - cached.fetched_at < self._ttl:
            return cached.values
        values = self._fetch(name)
        self._cache[name] = _Cached(values, time.monotonic())
        return values

    def current(self, name: str) -> str:
        return self.values(name)[0]

    def _fetch(self, name: str) -> tuple[str, ...]:
        settings = get_settings()
        client = self._client or aws_client("ssm")
        current = settings.parameter(name)
        previous = current + PREVIOUS_SUFFIX
        try:
            response = client.get_parameters(Names=[current, previous], WithDecryption=True)
        except Exception as err:
            raise SecretUnavailable(f"cannot read SSM parameter {current}") from err
        found = {p["Name"]: p["Value"] for p in response.get("Parameters", [])}
        if not found.get(current):
            raise SecretUnavailable(f"SSM parameter {current} is not set")
        return tuple(v for v in (found.get(current), found.get(previous)) if v)

    def clear(self) -> None:
        self._cache.clear()


_secrets: SecretCache | None = None


def get_secrets() -> SecretCache:
    """The container's secret cache."""
    global _secrets
    if _secrets is None:
        _secrets = SecretCache(ttl_seconds=get_settings().secrets_ttl_seconds)
    return _secrets


def reset_secrets() -> None:
    """Forget the container's cache (tests, rotation drills)."""
    global _secrets
    _secrets = None
