"""moto's server finding each request's service once per host name, not once per request.

moto 5.2.5 matches every request's host against 183 URL patterns, one after another, under
the dispatcher's lock (about 0.5 ms a request on this machine, and every other request waits
for it). A host always maps to the same service, so the answer is remembered per host.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_MARK = "_mailroom_dispatch_patch"


def install() -> Callable[[], None]:
    """Remember each host's backend in this process; returns a function that undoes it."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    if getattr(DomainDispatcherApplication, _MARK, False):
        return lambda: None
    original = DomainDispatcherApplication.get_backend_for_host
    known: dict[str, Any] = {}

    def get_backend_for_host(dispatcher: Any, host: str | None) -> Any:
        if host is None:
            return None
        backend = known.get(host)
        if backend is None:
            backend = original(dispatcher, host)
            if backend is not None:  # an unknown host is looked for (and reported) again
                known[host] = backend
        return backend

    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host  # type: ignore[method-assign]
    setattr(DomainDispatcherApplication, _MARK, True)

    def undo() -> None:
        DomainDispatcherApplication.get_backend_for_host = original  # type: ignore[method-assign]
        setattr(DomainDispatcherApplication, _MARK, False)

    return undo
