"""moto's server remembers each host's service: the same answers as moto's own lookup, without
matching every URL pattern on every request."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from mailroom_local import moto_dispatch

HOSTS = [
    "sqs.us-east-1.amazonaws.com",
    "sns.eu-west-1.amazonaws.com",
    "s3.us-east-1.amazonaws.com",
    "dynamodb",
    "sesv2",
    "moto_api",
]


@pytest.fixture
def dispatcher() -> Iterator[DomainDispatcherApplication]:
    undo = moto_dispatch.install()
    yield DomainDispatcherApplication(create_backend_app)
    undo()


def test_each_host_maps_to_the_service_moto_itself_finds() -> None:
    plain = DomainDispatcherApplication(create_backend_app)
    expected = {host: plain.get_backend_for_host(host) for host in HOSTS}
    undo = moto_dispatch.install()
    try:
        patched = DomainDispatcherApplication(create_backend_app)
        first = {host: patched.get_backend_for_host(host) for host in HOSTS}
        again = {host: patched.get_backend_for_host(host) for host in HOSTS}
    finally:
        undo()

    assert first == again == expected
    assert expected["sqs.us-east-1.amazonaws.com"] == "sqs"


def test_the_patterns_are_matched_once_per_host(
    dispatcher: DomainDispatcherApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    matched: list[str] = []
    patterns = [
        (backend, _Counting(pattern, matched))
        for backend, pattern in dispatcher.backend_url_patterns
    ]
    monkeypatch.setattr(dispatcher, "backend_url_patterns", patterns)

    for _ in range(5):
        assert dispatcher.get_backend_for_host("sqs.us-west-2.amazonaws.com") == "sqs"

    assert 0 < len(matched) == len(set(matched))


class _Counting:
    """A URL pattern that notes each host it is matched against."""

    def __init__(self, pattern: object, seen: list[str]) -> None:
        self._pattern = pattern
        self._seen = seen

    def match(self, url: str) -> object:
        self._seen.append(f"{id(self)}{url}")
        return self._pattern.match(url)  # type: ignore[attr-defined]
