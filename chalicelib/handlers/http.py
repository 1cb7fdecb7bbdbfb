"""What an HTTP handler returns: a status, a JSON body and headers, independent of Chalice."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class HttpReply:
    """A JSON response; app.py turns it into a Chalice ``Response``."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def error(status: int, code: str, message: str, **details: Any) -> HttpReply:
    """A JSON error body: ``{"error": code, "message": message, ...details}``."""
    return HttpReply(status, {"error": code, "message": message, **details})
