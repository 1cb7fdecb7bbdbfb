"""``mailroom routes add|set`` checks a gmail rule's label ids against the mailbox's own labels
(moto's SSM holds the authorization; the Gmail stand-in over HTTP is the mailbox)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests
from click.testing import Result

from mailroom_local import gmail
from mailroom_local.authorize import ensure_labels
from tests.cli.conftest import Invoke
from tests.conftest import REGION, STAGE, Stage, serve_wsgi

BOX = "team@gmail.test"
CLIENT = {"client_id": "cid", "client_secret": "cs", "refresh_token": "rt"}


class Mailbox:
    def __init__(self, url: str) -> None:
        self.url = url

    def create_label(self, name: str) -> str:
        gmail = {"url": self.url, "token_url": f"{self.url}/token", **CLIENT}
        return ensure_labels(gmail, BOX, [name])[name]

    def revoke(self) -> None:
        requests.post(f"{self.url}/_control/gmail-faults", json={"revoked": True}, timeout=5)


def _point_at(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("MAILROOM_GMAIL_API_URL", url)
    monkeypatch.setenv("MAILROOM_GMAIL_TOKEN_URL", f"{url}/token")


@pytest.fixture
def mailbox(aws: Stage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Mailbox]:
    app = gmail.create_app(state_dir=tmp_path, **CLIENT)
    for url in serve_wsgi(app):
        _point_at(monkeypatch, url)
        boto3.client("ssm", region_name=REGION).put_parameter(
            Name=f"/mailroom/{STAGE}/gmail/team_at_gmail.test",
            Value=json.dumps(CLIENT),
            Type="SecureString",
        )
        yield Mailbox(url)


def _add(mailroom: Invoke, target: str, *, json_output: bool = False) -> Result:
    return mailroom(
        "routes", "add", "*", "--action", "gmail", "--target", target, json_output=json_output
    )


def _rules(mailroom: Invoke) -> list[dict[str, object]]:
    return list(json.loads(mailroom("routes", "list", json_output=True).stdout))


def _audited(mailroom: Invoke) -> list[str]:
    return [r["action"] for r in json.loads(mailroom("audit", "list", json_output=True).stdout)]


def test_a_rule_whose_labels_the_mailbox_has_is_written(mailbox: Mailbox, mailroom: Invoke) -> None:
    label = mailbox.create_label("Projects")
    target = f"{BOX};labels=INBOX,{label};spam_label=SPAM"

    added = _add(mailroom, target, json_output=True)

    assert added.exit_code == 0, added.output
    check = json.loads(added.stdout)["label_check"]
    assert (check["checked"], check["named"], check["unknown"]) == (
        True,
        ["INBOX", label, "SPAM"],
        [],
    )
    assert [r["target"] for r in _rules(mailroom)] == [target]
    assert added.stderr == ""


def test_a_label_the_mailbox_lacks_is_refused_with_the_mailboxs_labels_and_nothing_written(
    mailbox: Mailbox, mailroom: Invoke
) -> None:
    mailbox.create_label("Projects")

    refused = mailroom(
        "routes", "add", "*", "--action", "gmail", "--target", f"{BOX};labels=INBOX,Label_99"
    )

    assert refused.exit_code == 2
    first, *listed = refused.stderr.splitlines()
    assert first == (
        f"Error: rule '*' refused: the Gmail mailbox {BOX} has no label Label_99; its labels:"
    )
    rows = [line.split(None, 1) for line in listed[1:]]
    assert ["Label_1", "Projects"] in rows
    assert ["INBOX", "INBOX"] in rows
    assert _rules(mailroom) == []
    assert "route.add" not in _audited(mailroom)


def test_an_unknown_spam_label_is_refused_too(mailbox: Mailbox, mailroom: Invoke) -> None:
    refused = mailroom(
        "routes", "add", "*", "--action", "gmail", "--target", f"{BOX};spam_label=Label_34"
    )

    assert refused.exit_code == 2
    assert "has no label Label_34" in refused.stderr


def test_json_output_carries_the_unknown_label_and_the_mailboxs_labels(
    mailbox: Mailbox, mailroom: Invoke
) -> None:
    mailbox.create_label("Projects")
    target = f"{BOX};labels=Label_1,Label_99,Label_98"

    refused = mailroom(
        "routes", "add", "*", "--action", "gmail", "--target", target, json_output=True
    )

    assert refused.exit_code == 2
    answer = json.loads(refused.stdout)
    assert answer["refused"] == "*"
    check = answer["label_check"]
    assert (check["mailbox"], check["checked"], check["unknown"]) == (
        BOX,
        True,
        ["Label_99", "Label_98"],
    )
    assert {"id": "Label_1", "name": "Projects"} in check["mailbox_labels"]
    assert refused.stderr.strip() == (
        f"Error: rule '*' refused: the Gmail mailbox {BOX} has no label Label_99, Label_98"
    )


def test_set_with_a_label_the_mailbox_lacks_leaves_the_rule_as_it_was(
    mailbox: Mailbox, mailroom: Invoke
) -> None:
    mailroom("routes", "add", "*", "--action", "gmail", "--target", f"{BOX};labels=INBOX")

    refused = mailroom("routes", "set", "*", "--target", f"{BOX};labels=INBOX,Label_7")

    assert refused.exit_code == 2
    assert "has no label Label_7" in refused.stderr
    assert [r["target"] for r in _rules(mailroom)] == [f"{BOX};labels=INBOX"]
    assert "route.set" not in _audited(mailroom)


def test_a_revoked_mailbox_is_warned_about_and_the_rule_written(
    mailbox: Mailbox, mailroom: Invoke
) -> None:
    mailbox.revoke()
    target = f"{BOX};labels=Label_7"

    added = _add(mailroom, target, json_output=True)

    assert added.exit_code == 0, added.output
    [warning] = added.stderr.splitlines()
    assert warning.startswith(f"warning: labels not checked against {BOX}: ")
    assert "re-authorize" in warning
    assert warning.endswith("the rule is written as given")
    check = json.loads(added.stdout)["label_check"]
    assert (check["checked"], check["mailbox_labels"], check["unknown"]) == (False, None, [])
    assert "re-authorize" in check["warning"]
    assert [r["target"] for r in _rules(mailroom)] == [target]


def test_gmail_unreachable_is_warned_about_and_the_rule_written(
    mailbox: Mailbox, mailroom: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        _point_at(monkeypatch, f"http://127.0.0.1:{closed.getsockname()[1]}")

    added = mailroom("routes", "add", "*", "--action", "gmail", "--target", f"{BOX};labels=INBOX")

    assert added.exit_code == 0, added.output
    assert "warning: labels not checked against" in added.stderr
    assert "unreachable" in added.stderr
    assert len(_rules(mailroom)) == 1


def test_a_rule_naming_no_label_does_not_ask_gmail(mailbox: Mailbox, mailroom: Invoke) -> None:
    added = mailroom("routes", "add", "*", "--action", "gmail", "--target", BOX)

    assert added.exit_code == 0, added.output
    seen = requests.get(f"{mailbox.url}/_control/requests", timeout=5).json()["requests"]
    assert seen == []
