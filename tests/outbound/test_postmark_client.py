"""PostmarkClient against the Postmark stand-in over HTTP, and `responses` for edge statuses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from chalicelib.platform.errors import (
    ProviderAuthError,
    ProviderPermanentError,
    ProviderTransientError,
)
from chalicelib.providers.postmark.client import (
    InactiveRecipients,
    PostmarkClient,
    inactive_addresses,
)
from mailroom_local import postmark
from tests.conftest import postmark_message, serve_wsgi

TOKEN = "pm-token"


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[str]:
    yield from serve_wsgi(postmark.create_app(server_token=TOKEN, state_dir=tmp_path))


def test_batch_of_ten_is_one_http_call_with_per_message_results(standin: str) -> None:
    requests.post(f"{standin}/_control/inactive", json={"addresses": ["x3@t.test"]}, timeout=5)
    client = PostmarkClient(TOKEN, base_url=standin)

    results = client.send_batch([postmark_message(f"x{i}@t.test", f"c-{i}") for i in range(10)])

    calls = requests.get(f"{standin}/_control/messages", timeout=5).json()["messages"]
    assert len(calls) == 9
    assert [r.error is None for r in results].count(True) == 9
    failed = results[3].error
    assert isinstance(failed, InactiveRecipients)
    assert failed.addresses == ["x3@t.test"]


def test_outbound_search_finds_a_sent_message_by_correlation_id(standin: str) -> None:
    client = PostmarkClient(TOKEN, base_url=standin)
    sent = client.send(postmark_message("a@t.test", "order-42"))

    found = client.search_outbound({"correlation_id": "order-42"})

    assert [m["MessageID"] for m in found] == [sent.message_id]


def test_wrong_token_is_a_configuration_error(standin: str) -> None:
    with pytest.raises(ProviderAuthError):
        PostmarkClient("wrong", base_url=standin).send(postmark_message("a@t.test", "c"))


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (429, {"ErrorCode": 429, "Message": "Rate limit exceeded"}, ProviderTransientError),
        (500, {"ErrorCode": 500, "Message": "Internal"}, ProviderTransientError),
        (503, None, ProviderTransientError),
        (422, {"ErrorCode": 100, "Message": "Maintenance"}, ProviderTransientError),
        (422, {"ErrorCode": 300, "Message": "Invalid email request"}, ProviderPermanentError),
        (413, None, ProviderPermanentError),
    ],
)
@responses.activate
def test_statuses_and_error_codes_are_classified(
    status: int, body: dict[str, Any] | None, expected: type[Exception]
) -> None:
    kwargs: dict[str, Any] = {"json": body} if body is not None else {"body": "<html>busy</html>"}
    responses.add(responses.POST, "https://pm.test/email", status=status, **kwargs)

    with pytest.raises(expected):
        PostmarkClient(TOKEN, base_url="https://pm.test").send(postmark_message("a@t.test", "c"))


@responses.activate
def test_html_403_from_the_network_layer_is_transient() -> None:
    responses.add(responses.POST, "https://pm.test/email", status=403, body="<html>denied</html>")
    with pytest.raises(ProviderTransientError):
        PostmarkClient(TOKEN, base_url="https://pm.test").send(postmark_message("a@t.test", "c"))


@responses.activate
def test_timeout_is_transient() -> None:
    responses.add(responses.POST, "https://pm.test/email", body=requests.Timeout())
    with pytest.raises(ProviderTransientError):
        PostmarkClient(TOKEN, base_url="https://pm.test").send(postmark_message("a@t.test", "c"))


def test_inactive_addresses_are_parsed_from_thepostmark_message() -> None:
    message = (
        "You tried to send to recipient(s) that have been marked as inactive. Found inactive "
        "addresses: A@x.test, b@y.test. Inactive recipients are ones that ..."
    )
    assert inactive_addresses(message) == ["a@x.test", "b@y.test"]


def test_a_batch_is_split_by_count_and_by_size_in_order() -> None:
    big = "x" * 15_000_000
    messages = [postmark_message(f"x{i}@t.test", f"c-{i}") | {"TextBody": big} for i in range(5)]
    messages += [postmark_message(f"y{i}@t.test", f"d-{i}") for i in range(600)]
    with responses.RequestsMock() as postmark:
        postmark.add_callback(
            responses.POST,
            "https://postmark.test/email/batch",
            callback=lambda request: (
                200,
                {},
                json.dumps(
                    [
                        {
                            "ErrorCode": 0,
                            "Message": "OK",
                            "MessageID": m["Metadata"]["correlation_id"],
                        }
                        for m in json.loads(request.body)
                    ]
                ),
            ),
        )
        results = PostmarkClient(TOKEN, base_url="https://postmark.test").send_batch(messages)
        sizes = [len(json.loads(c.request.body)) for c in postmark.calls]

    assert [r.message_id for r in results] == [m["Metadata"]["correlation_id"] for m in messages]
    assert sizes == [2, 2, 500, 101]
