"""Gmail labels: the stand-in's per-mailbox labels, ``GmailClient.labels()`` over real HTTP, and
Gmail's 400 for an import naming a label the mailbox does not have."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from chalicelib.platform.errors import ProviderTransientError
from chalicelib.providers.gmail.client import (
    GmailAuthRevoked,
    GmailClient,
    GmailLabelNotFound,
    OAuthClient,
    TokenCache,
)
from mailroom_local import gmail
from mailroom_local.authorize import ensure_labels
from tests.conftest import serve_wsgi
from tests.ses.conftest import mime

OAUTH = OAuthClient("client", "secret", "refresh")
BOX = "box@gmail.test"


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[str]:
    app = gmail.create_app(
        client_id="client", client_secret="secret", refresh_token="refresh", state_dir=tmp_path
    )
    yield from serve_wsgi(app)


def _client(url: str, mailbox: str = BOX) -> GmailClient:
    session = requests.Session()
    tokens = TokenCache(f"{url}/token", session=session, timeout=5)
    return GmailClient(mailbox, OAUTH, tokens=tokens, session=session, api_url=url, timeout=30)


def _bearer(url: str) -> dict[str, str]:
    form = {
        "grant_type": "refresh_token",
        "client_id": "client",
        "client_secret": "secret",
        "refresh_token": "refresh",
    }
    token = requests.post(f"{url}/token", data=form, timeout=5).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def _create(url: str, name: str, mailbox: str = BOX) -> requests.Response:
    return requests.post(
        f"{url}/gmail/v1/users/{mailbox}/labels",
        json={"name": name},
        headers=_bearer(url),
        timeout=5,
    )


def test_a_new_mailbox_lists_gmails_system_labels_in_gmails_shape(standin: str) -> None:
    url = f"{standin}/gmail/v1/users/{BOX}/labels"
    answer = requests.get(url, headers=_bearer(standin), timeout=5)

    assert answer.status_code == 200
    labels = {label["id"]: label for label in answer.json()["labels"]}
    for system in ("INBOX", "SPAM", "TRASH", "UNREAD", "STARRED", "IMPORTANT", "SENT", "DRAFT"):
        assert labels[system]["type"] == "system"
        assert labels[system]["name"] == system
    assert labels["CATEGORY_PROMOTIONS"]["type"] == "system"
    assert not any(label["type"] == "user" for label in labels.values())


def test_a_created_label_gets_a_user_label_id_in_that_mailbox_only(standin: str) -> None:
    first = _create(standin, "Projects")
    second = _create(standin, "Invoices")

    assert first.status_code == 200
    assert (first.json()["id"], first.json()["name"], first.json()["type"]) == (
        "Label_1",
        "Projects",
        "user",
    )
    assert second.json()["id"] == "Label_2"
    assert _client(standin).labels()["Label_1"] == "Projects"
    assert "Label_1" not in _client(standin, "other@gmail.test").labels()


def test_a_label_name_taken_is_refused_with_409(standin: str) -> None:
    _create(standin, "Projects")

    again = _create(standin, "Projects")

    assert again.status_code == 409
    assert again.json()["error"]["message"] == "Label name exists or conflicts"


def test_labels_maps_every_label_id_to_its_name(standin: str) -> None:
    _create(standin, "Projects")

    labels = _client(standin).labels()

    assert labels["INBOX"] == "INBOX"
    assert labels["Label_1"] == "Projects"


def test_an_import_naming_a_label_the_mailbox_lacks_is_refused_and_not_stored(
    standin: str,
) -> None:
    with pytest.raises(GmailLabelNotFound) as caught:
        _client(standin).import_message(mime(), labels=("INBOX", "Label_99"), never_mark_spam=True)

    assert caught.value.label == "Label_99"
    assert caught.value.status_code == 400
    assert caught.value.error_code == "invalidArgument"
    assert not caught.value.transient
    assert caught.value.may_have_acted is False
    assert requests.get(f"{standin}/_control/mailboxes", timeout=5).json() == {}


def test_an_import_with_a_created_label_is_stored(standin: str) -> None:
    label = _create(standin, "Projects").json()["id"]

    result = _client(standin).import_message(mime(), labels=("INBOX", label), never_mark_spam=True)

    assert result["gmail_id"]


def test_the_json_import_answers_gmails_own_400_body(standin: str) -> None:
    answer = requests.post(
        f"{standin}/gmail/v1/users/{BOX}/messages/import",
        json={"raw": "RnJvbTogYUB4DQoNCmhp", "labelIds": ["Label_7"]},
        headers=_bearer(standin),
        timeout=5,
    )

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert (error["code"], error["message"], error["status"]) == (
        400,
        "Invalid label: Label_7",
        "INVALID_ARGUMENT",
    )
    assert error["errors"][0]["reason"] == "invalidArgument"


def test_labels_of_a_revoked_mailbox_ask_for_reauthorization(standin: str) -> None:
    requests.post(f"{standin}/_control/gmail-faults", json={"revoked": True}, timeout=5)

    with pytest.raises(GmailAuthRevoked):
        _client(standin).labels()


def test_labels_when_gmail_fails_are_transient_and_acted_on_nothing(standin: str) -> None:
    rule = {"status": 503, "count": 1, "path": f"/gmail/v1/users/{BOX}/labels"}
    requests.post(f"{standin}/_control/faults", json={"rules": [rule]}, timeout=5)

    with pytest.raises(ProviderTransientError) as caught:
        _client(standin).labels()
    assert caught.value.may_have_acted is False


def test_authorize_gmails_labels_are_created_once_and_named_by_their_ids(standin: str) -> None:
    local = {
        "url": standin,
        "token_url": f"{standin}/token",
        "client_id": "client",
        "client_secret": "secret",
        "refresh_token": "refresh",
    }

    first = ensure_labels(local, BOX, ["Projects", "Invoices", "Spam"])
    again = ensure_labels(local, BOX, ["projects"])

    assert first == {"Projects": "Label_1", "Invoices": "Label_2", "Spam": "SPAM"}
    assert again == {"projects": "Label_1"}
    assert _client(standin).labels()["Label_2"] == "Invoices"
