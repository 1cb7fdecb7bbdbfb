"""The scheduled probe (F1): settle the earlier probes, then send the next ones.

Runs every ``MAILROOM_PROBE_RATE_MINUTES`` (app.py's schedule) and does nothing unless
``MAILROOM_PROBE_ENABLED``. A probe is checked on a later run, so its latency is measured
from FreeScout's and the delivery log's own timestamps, not from this schedule. A probe
that is not configured sends nothing and publishes nothing: the probe alarm then fires on
missing data, which is the point.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from chalicelib.handlers.probe import checks as probe
from chalicelib.platform.errors import error_class, reason_of
from chalicelib.platform.logging import log_event, log_outcome
from chalicelib.platform.settings import Settings, get_settings


def run(settings: Settings | None = None) -> dict[str, Any]:
    """One scheduled run; a summary (also the Lambda's return value, for the console)."""
    settings = settings or get_settings()
    if not settings.probe_enabled:
        log_event("probe disabled", event_type=probe.EVENT_TYPE)
        return {"status": "disabled"}
    started = time.perf_counter()
    summary: dict[str, Any] = {"status": "ran", "settled": {}, "sent": {}}
    try:
        for record in probe.check_probes(settings):
            summary["settled"][record.probe_id] = record.status.value
    except Exception as err:  # a failed check must not stop the next probes from going out
        _failed("probe check failed", err)
    senders: dict[str, Callable[[Settings], probe.ProbeRecord]] = {
        probe.ProbeKind.INBOUND.value: probe.send_inbound_probe,
        probe.ProbeKind.OUTBOUND.value: probe.send_outbound_probe,
    }
    for kind, send in senders.items():
        try:
            summary["sent"][kind] = send(settings).status.value
        except probe.ProbeNotConfigured as err:
            log_event(
                "probe not configured", event_type=probe.EVENT_TYPE, probe=kind, reason=err.reason
            )
            summary["sent"][kind] = "not_configured"
        except Exception as err:
            _failed("probe send failed", err, kind=kind)
            summary["sent"][kind] = "error"
    log_outcome(
        probe.EVENT_TYPE,
        message_id=None,
        outcome="error" if "error" in summary["sent"].values() else "success",
        duration_ms=(time.perf_counter() - started) * 1000,
    )
    return summary


def _failed(message: str, err: BaseException, *, kind: str | None = None) -> None:
    log_event(
        message,
        event_type=probe.EVENT_TYPE,
        probe=kind,
        error_class=error_class(err),
        reason=reason_of(err),
    )
