"""Fault injection shared by the stand-ins: ``/_control/faults`` on any Flask app.

``POST /_control/faults`` takes ``{"status": 503, "count": 3}`` (the next 3 service requests
get that status, with the service's own error body) and/or ``{"delay_ms": 200}`` (every
service request is delayed until cleared); ``DELETE /_control/faults`` clears. Requests
under ``/_control`` are never faulted. ``GET /_control/requests`` lists every service request
received (method and path, faulted or not), so tests and benchmarks can count HTTP calls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, request

ErrorBody = Callable[[int], Any]


def install(app: Flask, error_body: ErrorBody) -> None:
    """Add the control routes and the fault gate to ``app``."""
    lock = threading.Lock()
    faults: dict[str, int] = {}
    seen: list[dict[str, str]] = []

    @app.before_request
    def gate() -> Any:
        if request.path.startswith("/_control"):
            return None
        with lock:
            seen.append({"method": request.method, "path": request.path})
        delay = faults.get("delay_ms", 0)
        if delay:
            time.sleep(delay / 1000)  # the injected latency itself
        with lock:
            if faults.get("count", 0) > 0:
                faults["count"] -= 1
                return error_body(faults["status"]), faults["status"]
        return None

    @app.post("/_control/faults")
    def set_faults() -> Any:
        body = request.get_json(silent=True)
        try:
            wanted = {
                "status": int(body.get("status", 503)),
                "count": int(body.get("count", 0)),
                "delay_ms": int(body.get("delay_ms", 0)),
            }
        except (AttributeError, TypeError, ValueError):
            return {"error": 'expected {"status": int, "count": int} and/or {"delay_ms": int}'}, 400
        with lock:
            faults.clear()
            faults.update(wanted)
        return dict(faults), 200

    @app.get("/_control/requests")
    def requests_seen() -> Any:
        with lock:
            return {"requests": list(seen)}, 200

    @app.delete("/_control/faults")
    def clear_faults() -> Any:
        with lock:
            faults.clear()
        return {}, 200
