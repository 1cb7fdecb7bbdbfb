"""One JSON line per event, with identifiers hashed and no raw address, subject or body.

Written on the standard library rather than Powertools' Logger: Powertools adds ~90 ms to
a cold import (bench/cold_start.py) and we need only a formatter and a field whitelist.
Outcome lines also carry CloudWatch metrics in Embedded Metric Format (``metrics``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

from chalicelib.platform import metrics

# Not "mailroom": Chalice(app_name="mailroom") owns that logger and its plain-text handler.
LOGGER_NAME = "mailroom.pipeline"

# Only these fields reach the log line; anything else passed by a caller is dropped, so a
# stray address or subject cannot leak through a new call site.
ALLOWED_FIELDS = frozenset(
    {
        "event_type",
        "message_id_hash",
        "mailbox_id",
        "correlation_id",
        "outcome",
        "timestamp_utc",
        "duration_ms",
        "error_class",
        "reason",
        "status_code",
        "count",
        "group_hash",
        "attempt",
        "action",
        "route_pattern_hash",
        "provider",
        "stage",
        # metric dimensions (chalicelib.platform.metrics)
        "disposition",
        "provider_signal",
        "error_code",
        "probe",
        "latency_ms",
    }
)
# The message of the one line per outcome; dashboards, alarms and saved queries read it.
OUTCOME_MESSAGE = "message outcome"
# Every member a line can have: what the formatter adds, the whitelist, and the EMF members.
LOGGED_FIELDS = ALLOWED_FIELDS | {"level", "message"} | metrics.METRIC_MEMBERS


def hash_id(value: str | None) -> str | None:
    """SHA-256 of an identifier, truncated: enough to correlate, useless to read."""
    if value is None or value == "":
        return None
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]


class JsonFormatter(logging.Formatter):
    """Renders the record's ``fields`` dict as one JSON object."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, "fields", {})
        line: dict[str, Any] = {
            "level": record.levelname,
            "message": record.getMessage(),
            "timestamp_utc": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        line.update({k: v for k, v in fields.items() if k in ALLOWED_FIELDS and v is not None})
        measured: dict[metrics.Metric, float] | None = getattr(record, "metrics", None)
        if measured:
            line.update(metrics.emf(measured))
        return json.dumps(line, separators=(",", ":"), default=str)


def get_logger(level: str = "INFO") -> logging.Logger:
    """The mailroom logger, configured once: JSON to stdout at ``level``."""
    logger = logging.getLogger(LOGGER_NAME)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level)
    return logger


def log_event(
    message: str,
    *,
    level: int = logging.INFO,
    measured: dict[metrics.Metric, float] | None = None,
    **fields: Any,
) -> None:
    """Log a constant ``message`` with structured ``fields`` (see ALLOWED_FIELDS); with
    ``measured``, the line carries those metrics (EMF), whose dimensions must be in ``fields``.
    An outcome line written here (the HTTP edge writes its own) gets the outcome metrics."""
    if measured is None and message == OUTCOME_MESSAGE and _is_outcome(fields):
        measured = metrics.outcome_metrics(fields)
    logger = logging.getLogger(LOGGER_NAME)
    if not logger.handlers:
        logger = get_logger(os.environ.get("MAILROOM_LOG_LEVEL", "INFO").upper())
    logger.log(level, message, extra={"fields": fields, "metrics": measured})


def _is_outcome(fields: dict[str, Any]) -> bool:
    return all(isinstance(fields.get(k), str) for k in ("event_type", "outcome")) and isinstance(
        fields.get("duration_ms"), int | float
    )


def log_outcome(
    event_type: str,
    *,
    message_id: str | None,
    outcome: str,
    duration_ms: float,
    mailbox_id: str | None = None,
    correlation_id: str | None = None,
    error_class: str | None = None,
    **fields: Any,
) -> None:
    """The one line per message outcome that dashboards and alarms read.

    It carries the outcome metrics (EMF); a provider failure adds ``provider`` and
    ``provider_signal``, a dead letter its ``disposition`` (see ``chalicelib.platform.metrics``).
    """
    line: dict[str, Any] = {
        "event_type": event_type,
        "message_id_hash": hash_id(message_id),
        "outcome": outcome,
        "duration_ms": round(duration_ms, 1),
        "mailbox_id": mailbox_id,
        "correlation_id": correlation_id,
        "error_class": error_class,
        **fields,
    }
    line.update(metrics.provider_fields(line))
    if outcome == "dead_lettered":
        line["disposition"] = metrics.disposition(line)
    log_event(
        OUTCOME_MESSAGE,
        level=logging.WARNING if outcome in {"retry", "dead_lettered"} else logging.INFO,
        measured=metrics.outcome_metrics(line),
        **line,
    )


def log_routing_decision(
    event_type: str,
    *,
    message_id: str | None,
    action: str,
    pattern: str | None,
    mailbox_id: str | None = None,
) -> None:
    """One line per recipient's routing decision (the saved query "routing-decisions")."""
    log_event(
        "routing decision",
        event_type=event_type,
        message_id_hash=hash_id(message_id),
        action=action,
        route_pattern_hash=hash_id(pattern),
        mailbox_id=mailbox_id,
    )
