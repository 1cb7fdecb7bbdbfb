"""Every outbound call a handler makes, found by wrapping the transports, and a crash at one.

AWS calls are wrapped at botocore's ``BaseClient._make_api_call`` (every client of every
session, whichever way the code built it); HTTP calls at ``requests``' transport,
``HTTPAdapter.send``. Only calls made while the boundaries are armed count, so the harness's
own reads of queues and stand-ins are invisible. A crash is a ``BaseException`` that no
handler catches: the function died. Once dead, every further call fails the same way, so
cleanup code that runs while the exception unwinds cannot act as a dead function could not.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import botocore.client
import requests.adapters

When = Literal["before", "after"]
READ_VERBS = ("Get", "List", "Describe", "Head", "Scan", "Query", "BatchGet", "GET", "HEAD")


class Crash(BaseException):
    """The function died at a boundary (Lambda's timeout or out-of-memory, say)."""


@dataclass(frozen=True)
class Call:
    """One outbound call: ``aws`` with service.Operation, or ``http`` with method host path."""

    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"

    @property
    def reads(self) -> bool:
        """A call that changes nothing (by its name: an HTTP GET, an AWS Get/List/Describe/
        Head/Scan/Query): a crash after it leaves what a crash before it leaves."""
        verb = self.name.split(".")[-1] if self.kind == "aws" else self.name.split(" ")[0]
        return verb.startswith(READ_VERBS)


@dataclass
class Boundaries:
    """Records the armed calls in order, and crashes before or after call ``index``."""

    calls: list[Call] = field(default_factory=list)
    armed: bool = False
    crash_at: tuple[int, When] | None = None
    dead: bool = False

    thread: int = 0  # only the function under test's own calls: not a server it calls

    def arm(self, crash_at: tuple[int, When] | None) -> None:
        self.calls, self.crash_at, self.dead, self.armed = [], crash_at, False, True
        self.thread = threading.get_ident()

    def disarm(self) -> None:
        self.armed = False

    def around(self, call: Call, perform: Callable[[], Any]) -> Any:
        if not self.armed or threading.get_ident() != self.thread:
            return perform()
        if self.dead:
            raise Crash(f"dead before {call}")
        index = len(self.calls)
        self.calls.append(call)
        if self.crash_at == (index, "before"):
            self.dead = True
            raise Crash(f"crash before {call}")
        try:
            return perform()
        finally:
            if self.crash_at == (index, "after"):
                self.dead = True
                raise Crash(f"crash after {call}")

    @contextlib.contextmanager
    def installed(self) -> Iterator[Boundaries]:
        """Wrap botocore's and requests' transports for the duration of the block."""
        make_api_call = botocore.client.BaseClient._make_api_call
        send = requests.adapters.HTTPAdapter.send

        def aws_call(client: Any, operation: str, params: Any) -> Any:
            service = client.meta.service_model.service_name
            call = Call("aws", f"{service}.{operation}")
            return self.around(call, lambda: make_api_call(client, operation, params))

        def http_call(adapter: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            call = Call("http", http_name(request.method, request.url))
            return self.around(call, lambda: send(adapter, request, *args, **kwargs))

        botocore.client.BaseClient._make_api_call = aws_call
        requests.adapters.HTTPAdapter.send = http_call  # type: ignore[method-assign,assignment]
        try:
            yield self
        finally:
            botocore.client.BaseClient._make_api_call = make_api_call
            requests.adapters.HTTPAdapter.send = send  # type: ignore[method-assign]


def http_name(method: str | None, url: str | None) -> str:
    """``POST /api/conversations/{n}/threads``: the host dropped (stand-ins sit on random
    ports) and ids folded, so the same boundary has the same name in every run."""
    path = urlsplit(url or "").path
    path = re.sub(r"/[0-9a-f]{16,}|/\d+", "/{n}", path)
    return f"{method} {path}"
