"""boto3 clients built once per container, pointed at the local stack when configured.

Every module asks ``aws_client("sqs")`` instead of calling ``boto3.client`` so that a
container reuses one connection pool per service and tests can reset the cache.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from chalicelib.settings import get_settings


@cache
def aws_client(service: str) -> Any:
    """A cached boto3 client for ``service`` with short timeouts and standard retries."""
    import boto3  # imported here so that importing chalicelib stays cheap for the webhook
    from botocore.config import Config

    settings = get_settings()
    config = Config(
        connect_timeout=3,
        read_timeout=10,
        retries={"max_attempts": 3, "mode": "standard"},
    )
    return boto3.session.Session().client(
        service,
        region_name=settings.region,
        endpoint_url=settings.aws_endpoint_url,
        config=config,
    )


def reset_clients() -> None:
    """Forget cached clients and settings (tests and the local stack switch endpoints)."""
    aws_client.cache_clear()
    get_settings.cache_clear()
