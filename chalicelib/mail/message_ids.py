"""Provider message id → correlation id, in the state table, so feedback that carries only
the provider's id (SES identity notifications) and ``mailroom trace <provider id>`` find the
delivery it belongs to.

Items are ``PK = PROVIDER_MESSAGE#<provider>#<message id>``, ``SK = v1``, written with the
send's completion in the same batch write, expiring with the delivery log.
"""

from __future__ import annotations

import time
from typing import Any

PREFIX = "PROVIDER_MESSAGE#"


def lookup_item(
    provider: str, message_id: str, correlation_id: str, *, ttl_days: int
) -> dict[str, Any]:
    """The item that maps ``provider``'s ``message_id`` to ``correlation_id``."""
    return {
        "PK": {"S": f"{PREFIX}{provider}#{message_id}"},
        "SK": {"S": "v1"},
        "correlation_id": {"S": correlation_id},
        "provider": {"S": provider},
        "expires_at": {"N": str(int(time.time()) + ttl_days * 86_400)},
    }


def correlation_for(client: Any, table: str, provider: str, message_id: str) -> str | None:
    """The correlation id of ``provider``'s ``message_id``, if we sent it."""
    item = client.get_item(
        TableName=table,
        Key={"PK": {"S": f"{PREFIX}{provider}#{message_id}"}, "SK": {"S": "v1"}},
    ).get("Item")
    return item["correlation_id"]["S"] if item else None
