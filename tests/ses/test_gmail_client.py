"""The Gmail client against the local Gmail stand-in (real HTTP on loopback, injected faults)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from chalicelib.platform.errors import (
    ProviderAuthError,
    ProviderPermanentError,
    ProviderTransientError,
)
from chalicelib.providers.gmail.client import (
    REAUTHORIZE,
    GmailAuthRevoked,
    GmailClient,
    OAuthClient,
    TokenCache,
    parameter_name,
)
from mailroom_local import gmail
from mailroom_local.authorize import ensure_labels
from tests.conftest import serve_wsgi
from tests.ses.conftest import mime

OAUTH = OAuthClient("client", "secret", "refresh")


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[str]:
    app = gmail.create_app(
        client_id="client",
        client_secret="secret",
        refresh_token="refresh",
        state_dir=tmp_path,
        dedupe=False,
    )
    yield from serve_wsgi(app)


def _client(
    url: str, mailbox: str = "box@gmail.test", tokens: TokenCache | None = None
) -> GmailClient:
    session = requests.Session()
    return GmailClient(
        mailbox,
        OAUTH,
        tokens=tokens or TokenCache(f"{url}/token", session=session, timeout=5),
        session=session,
        api_url=url,
        timeout=30,
    )


def _faults(url: str, **faults: object) -> None:
    requests.post(f"{url}/_control/gmail-faults", json=faults, timeout=5).raise_for_status()


def _requests(url: str) -> list[str]:
    seen = requests.get(f"{url}/_control/requests", timeout=5).json()["requests"]
    return [f"{r['method']} {r['path']}" for r in seen]


def _create_label(url: str, name: str, mailbox: str = "box@gmail.test") -> str:
    client = {"client_id": "client", "client_secret": "secret", "refresh_token": "refresh"}
    gmail = {"url": url, "token_url": f"{url}/token", **client}
    return ensure_labels(gmail, mailbox, [name])[name]


def test_a_30_mb_message_is_imported_by_media_upload_with_the_rules_labels(
    standin: str, tmp_path: Path
) -> None:
    raw = mime(attachment=b"\xff" * 30_000_000)
    label = _create_label(standin, "Projects")

    result = _client(standin).import_message(raw, labels=("INBOX", label), never_mark_spam=True)

    [stored] = (tmp_path / "gmail").glob(f"box@gmail.test-{result['gmail_id']}.eml")
    assert stored.read_bytes() == raw
    seen = _requests(standin)
    assert "POST /upload/gmail/v1/users/box@gmail.test/messages/import" in seen
    assert any(p.startswith("PUT /upload/session/") for p in seen)
    assert "POST /gmail/v1/users/box@gmail.test/messages/import" not in seen  # not JSON raw


def test_an_imported_message_is_found_by_its_message_id(standin: str) -> None:
    client = _client(standin)
    client.import_message(mime(message_id="<find-me@x>"), labels=("INBOX",), never_mark_spam=True)

    assert client.find_by_message_id("<find-me@x>")
    assert client.find_by_message_id("<other@x>") is None
    assert _client(standin, "other@gmail.test").find_by_message_id("<find-me@x>") is None


def test_access_tokens_are_reused_until_they_expire(standin: str) -> None:
    client = _client(standin)
    client.find_by_message_id("<a@x>")
    client.find_by_message_id("<b@x>")

    assert _requests(standin).count("POST /token") == 1


def test_invalid_grant_is_permanent_and_asks_for_reauthorization(standin: str) -> None:
    _faults(standin, revoked=True)

    with pytest.raises(GmailAuthRevoked) as caught:
        _client(standin).import_message(mime(), labels=("INBOX",), never_mark_spam=True)
    assert caught.value.reason == REAUTHORIZE
    assert not caught.value.transient


@pytest.mark.parametrize(
    ("status", "reason"), [(429, "rateLimitExceeded"), (403, "userRateLimitExceeded")]
)
def test_rate_limits_are_transient_and_nothing_was_imported(
    standin: str, status: int, reason: str
) -> None:
    _faults(standin, status=status, reason=reason, count=1)

    with pytest.raises(ProviderTransientError) as caught:
        _client(standin).import_message(mime(), labels=("INBOX",), never_mark_spam=True)
    assert caught.value.may_have_acted is False


@pytest.mark.parametrize(("status", "reason"), [(403, "domainPolicy"), (400, "badRequest")])
def test_policy_and_request_errors_are_permanent(standin: str, status: int, reason: str) -> None:
    _faults(standin, status=status, reason=reason, count=1)

    with pytest.raises(ProviderPermanentError) as caught:
        _client(standin).import_message(mime(), labels=("INBOX",), never_mark_spam=True)
    assert reason in caught.value.reason


def test_a_server_error_after_the_upload_may_have_imported(standin: str) -> None:
    _faults(standin, fail_after_store=1, status=500)

    with pytest.raises(ProviderTransientError) as caught:
        _client(standin).import_message(mime(), labels=("INBOX",), never_mark_spam=True)
    assert caught.value.may_have_acted is True
    counts = requests.get(f"{standin}/_control/mailboxes", timeout=5).json()
    assert counts == {"box@gmail.test": 1}


def test_a_401_refreshes_once_then_gives_up_as_permanent(standin: str) -> None:
    session = requests.Session()
    tokens = TokenCache(f"{standin}/token", session=session, timeout=5)
    client = _client(standin, tokens=tokens)
    client.find_by_message_id("<a@x>")
    tokens._tokens["box@gmail.test"] = ("stale", 1e12)  # a token Gmail no longer accepts

    assert client.find_by_message_id("<a@x>") is None  # refreshed once, then fine
    assert _requests(standin).count("POST /token") == 2

    _faults(standin, status=401, reason="authError", count=2)
    with pytest.raises(ProviderAuthError):
        client.import_message(mime(), labels=("INBOX",), never_mark_spam=True)


def test_the_ssm_parameter_name_is_valid_for_ssm() -> None:
    assert parameter_name("Support@Example.com") == "gmail/support_at_example.com"
