"""``dlq redrive --ops-note``: the post-incident note in the ops FreeScout mailbox, once."""

from __future__ import annotations

import json

import pytest
import responses

from mailroom_cli import opsnote
from mailroom_cli.context import Context, aws_target
from mailroom_cli.deadletters import DeadLetter
from tests.cli.conftest import Invoke, dead_letter
from tests.conftest import REGION, STAGE, Stage

FREESCOUT = "https://help.example.test"


@pytest.fixture
def ops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILROOM_FREESCOUT_URL", FREESCOUT)
    monkeypatch.setenv("MAILROOM_OPS_MAILBOX_ID", "9")


def test_redrive_writes_the_post_incident_note_once(
    aws: Stage, mailroom: Invoke, ops: None
) -> None:
    dead_letter(aws, payload={"MessageID": "pm-n1"}, first_seen="2026-11-22T09:00:00+00:00")
    with responses.RequestsMock() as freescout:
        freescout.add(
            responses.POST,
            f"{FREESCOUT}/api/conversations",
            status=201,
            headers={"Resource-ID": "77"},
            json={"id": 77},
        )
        result = mailroom(
            "dlq",
            "redrive",
            "--ops-note",
            "FreeScout outage",
            "--resolution",
            "vendor fixed it",
            json_output=True,
        )
        [call] = freescout.calls

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["ops_note"] == "77"
    sent = json.loads(call.request.body)
    assert sent["mailboxId"] == 9
    [note] = sent["threads"]
    assert note["type"] == "note"
    for part in (
        "Incident time (first dead letter): 2026-11-22T09:00:00+00:00",
        "Root cause: FreeScout outage",
        "Resolution: vendor fixed it",
        "Messages redriven: 1 (inbound",
        "Redrive time: ",
    ):
        assert part in note["text"]


def test_the_same_redrive_never_writes_a_second_note(aws: Stage, ops: None) -> None:
    ctx = Context(lambda: aws_target(STAGE, REGION))
    letter = DeadLetter("sqs-1", "r", "{}", None, "2026-11-22T09:00:00+00:00", 0, 5, {})
    with responses.RequestsMock() as freescout:
        freescout.add(
            responses.POST,
            f"{FREESCOUT}/api/conversations",
            status=201,
            json={"id": 5},
            headers={"Resource-ID": "5"},
        )
        first = opsnote.write(
            ctx, pipeline="inbound", moved=[letter], root_cause="x", resolution="y"
        )
        again = opsnote.write(
            ctx, pipeline="inbound", moved=[letter], root_cause="x", resolution="y"
        )

        assert (first, again) == ("5", "5")
        assert len(freescout.calls) == 1


def test_an_ops_note_without_an_ops_mailbox_is_refused_before_anything_moves(
    aws: Stage, mailroom: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MAILROOM_OPS_MAILBOX_ID", raising=False)
    dead_letter(aws)

    result = mailroom("dlq", "redrive", "--ops-note", "cause")

    assert result.exit_code == 2
    assert "MAILROOM_OPS_MAILBOX_ID" in result.output
    assert json.loads(mailroom("dlq", "status", json_output=True).stdout)[0]["dlq"] == 1
