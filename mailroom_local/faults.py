"""Fault injection shared by the stand-ins: ``/_control/faults`` on any Flask app.

``POST /_control/faults`` takes a list of rules applied in order, each to the next ``count``
service requests (a rule without ``count`` applies until cleared)::

    {"rules": [{"status": 503, "count": 3}, {"status": 400, "count": 1}], "repeat": false}

A rule answers ``status`` with the service's own error body (after ``delay_ms`` if given);
``delay_ms`` alone serves the request at once and holds the answer back (the work is done,
the answer comes after the client's timeout); neither passes the request through (to space
faults out). ``"repeat": true`` starts the list
again when it runs out, so a service can flap. ``path`` (a prefix) and ``method`` limit a
rule to matching requests; others pass through without using it up. The older single forms
``{"status": 503, "count": 3}`` and ``{"delay_ms": 200}`` still work. ``GET /_control/faults``
shows the rules with what is left of each; ``DELETE`` clears them. ``GET /_control/requests``
lists the last ``WINDOW`` service requests received (method and path, faulted or not).
Requests under ``/_control`` are never faulted.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from flask import Flask, Response, g, request

ErrorBody = Callable[[int], Any]
# How much each stand-in keeps of what it received (requests, conversations, sends, imports),
# so a stack left up all day holds a bounded window, not the whole day.
WINDOW = int(os.environ.get("MAILROOM_LOCAL_STANDIN_WINDOW", "2000"))
USAGE = (
    'expected {"rules": [{"status": int, "delay_ms": int, "count": int, "path": str, '
    '"method": str}, ...], "repeat": bool} (or the single form {"status", "count", "delay_ms"})'
)


@dataclass
class Rule:
    """One step of a fault schedule; ``count`` None means until cleared."""

    status: int | None = None
    delay_ms: int = 0
    count: int | None = None
    path: str = ""
    method: str = ""
    left: int | None = None
    applied: int = 0

    def matches(self, method: str, path: str) -> bool:
        return path.startswith(self.path) and self.method.upper() in ("", method.upper())


def _rule(raw: Any) -> Rule:
    if not isinstance(raw, dict) or set(raw) - {"status", "delay_ms", "count", "path", "method"}:
        raise ValueError(USAGE)
    status = raw.get("status")
    count = raw.get("count")
    rule = Rule(
        status=None if status is None else int(status),
        delay_ms=int(raw.get("delay_ms", 0)),
        count=None if count is None else int(count),
        path=str(raw.get("path", "")),
        method=str(raw.get("method", "")),
    )
    if rule.status is not None and not 100 <= rule.status <= 599:
        raise ValueError("status must be an HTTP status (100-599)")
    if rule.delay_ms < 0 or (rule.count is not None and rule.count < 0):
        raise ValueError("delay_ms and count must not be negative")
    rule.left = rule.count
    return rule


def parse(body: Any) -> tuple[list[Rule], bool]:
    """The rules and the repeat flag of a POST body; ValueError names what is wrong."""
    if not isinstance(body, dict):
        raise ValueError(USAGE)
    if "rules" in body:
        if not isinstance(body["rules"], list) or set(body) - {"rules", "repeat"}:
            raise ValueError(USAGE)
        return [_rule(r) for r in body["rules"]], bool(body.get("repeat", False))
    # The single form: ``count`` requests answer ``status``; ``delay_ms`` delays every request.
    count = int(body.get("count", 0))
    delay = int(body.get("delay_ms", 0))
    rules = []
    if count > 0:
        rules.append(_rule({"status": int(body.get("status", 503)), "count": count}))
        rules[-1].delay_ms = delay
    if delay:
        rules.append(_rule({"delay_ms": delay}))
    return rules, False


class Schedule:
    """The rules of one stand-in; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._repeat = False

    def replace(self, rules: list[Rule], repeat: bool) -> None:
        with self._lock:
            self._rules, self._repeat = rules, repeat and any(r.count for r in rules)

    def take(self, method: str, path: str) -> Rule | None:
        """The rule for this request (using one of its count), or None to pass through.

        The current rule is the first with requests left; rules after a rule without a
        count are never reached.
        """
        with self._lock:
            for _ in range(2):
                current = next((r for r in self._rules if r.left != 0), None)
                if current is None:
                    if not self._repeat:
                        return None
                    for rule in self._rules:
                        rule.left = rule.count
                    continue
                if not current.matches(method, path):
                    return None
                if current.left is not None:
                    current.left -= 1
                current.applied += 1
                return current
            return None

    def show(self) -> dict[str, Any]:
        with self._lock:
            rules = [asdict(r) for r in self._rules]
            left = sum(r["left"] or 0 for r in rules if r["status"] is not None)
            return {"rules": rules, "repeat": self._repeat, "count": left}


def install(app: Flask, error_body: ErrorBody) -> None:
    """Add the control routes and the fault gate to ``app``."""
    lock = threading.Lock()
    schedule = Schedule()
    seen: deque[dict[str, str]] = deque(maxlen=WINDOW)

    @app.before_request
    def gate() -> Any:
        if request.path.startswith("/_control"):
            return None
        with lock:
            seen.append({"method": request.method, "path": request.path})
        rule = schedule.take(request.method, request.path)
        if rule is None:
            return None
        if rule.status is None:
            g.late_answer_ms = rule.delay_ms  # served now, answered late (hold_answer)
            return None
        if rule.delay_ms:
            time.sleep(rule.delay_ms / 1000)  # the injected latency itself
        return error_body(rule.status), rule.status

    @app.after_request
    def hold_answer(response: Response) -> Response:
        delay = g.pop("late_answer_ms", 0)
        if delay:
            time.sleep(delay / 1000)  # the work is done; the answer is what comes late
        return response

    @app.post("/_control/faults")
    def set_faults() -> Any:
        try:
            rules, repeat = parse(request.get_json(silent=True))
        except (TypeError, ValueError) as err:
            message = str(err) if str(err).startswith(("expected", "status", "delay")) else USAGE
            return {"error": message}, 400
        schedule.replace(rules, repeat)
        return schedule.show(), 200

    @app.get("/_control/faults")
    def get_faults() -> Any:
        return schedule.show(), 200

    @app.get("/_control/requests")
    def requests_seen() -> Any:
        with lock:
            return {"requests": list(seen)}, 200

    @app.delete("/_control/faults")
    def clear_faults() -> Any:
        schedule.replace([], False)
        return {}, 200
