"""boto3 clients built once per container, pointed at the local stack when configured.

Every module asks ``aws_client("sqs")`` instead of calling ``boto3.client`` so that a
container reuses one connection pool per service and tests can reset the cache. Where one
process serves requests on threads (the local API and pump), the first callers wait for one
build instead of each building a Session of their own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cache
from typing import Any

from chalicelib.platform.settings import get_settings

# Called with each new Session before any client is made from it. Empty in Lambda; a runner
# that hosts several functions in one process (the local stack) signs each function's calls
# with that function's own credentials this way, and records them.
SESSION_HOOKS: list[Callable[[Any], None]] = []
# Building a Session parses botocore's endpoint data (tens of ms of CPU): profiled under a
# burst of 200 posts, threads that missed the cache together spent 77 % of the local API's
# time building Sessions and clients of their own.
_BUILDING = threading.RLock()
# Threads of one process share a client (the local pump runs 4 batches per queue at once);
# past botocore's default of 10 pooled connections each call opened a new one.
POOLED_CONNECTIONS = 50


def aws_session() -> Any:
    """The container's one boto3 Session: clients built from it share its loaded models
    (measured: 505 to 629 ms to create a handler's clients with a Session each, 173 to 267 ms
    shared)."""
    with _BUILDING:
        return _session()


@cache
def _session() -> Any:
    import boto3  # imported here so that importing chalicelib stays cheap for the webhook

    session = boto3.session.Session()
    for hook in SESSION_HOOKS:
        hook(session)
    return session


def aws_client(service: str) -> Any:
    """A cached boto3 client for ``service`` with short timeouts and standard retries."""
    with _BUILDING:
        return _client(service)


@cache
def _client(service: str) -> Any:
    from botocore.config import Config

    settings = get_settings()
    config = Config(
        connect_timeout=3,
        read_timeout=10,
        retries={"max_attempts": 3, "mode": "standard"},
        max_pool_connections=POOLED_CONNECTIONS,
    )
    return aws_session().client(
        service,
        region_name=settings.region,
        endpoint_url=settings.aws_endpoint_url,
        config=config,
    )


def put_items(client: Any, table: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Write ``items`` with BatchWriteItem (25 per call, unprocessed ones retried twice);
    the items still unwritten (usually none)."""
    left: list[dict[str, Any]] = []
    for start in range(0, len(items), 25):
        pending = items[start : start + 25]
        for _ in range(3):
            if not pending:
                break
            response = client.batch_write_item(
                RequestItems={table: [{"PutRequest": {"Item": item}} for item in pending]}
            )
            unprocessed = response.get("UnprocessedItems", {}).get(table, [])
            pending = [request["PutRequest"]["Item"] for request in unprocessed]
        left.extend(pending)
    return left


def conditional_write(write: Callable[..., Any], **params: Any) -> bool:
    """Call a conditional DynamoDB write (``client.update_item``, ``client.put_item``) with
    ``params``; False if its condition did not hold. Any other failure raises."""
    from botocore.exceptions import ClientError

    try:
        write(**params)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
        return False
    return True


def reset_clients() -> None:
    """Forget cached clients and settings (tests and the local stack switch endpoints)."""
    with _BUILDING:
        _client.cache_clear()
        _session.cache_clear()
    get_settings.cache_clear()
