"""The Postmark and Gmail stand-ins over real HTTP: the shapes mailroom's clients will meet."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from mailroom_local import gmail, postmark
from tests.conftest import postmark_message, serve_wsgi

TOKEN = "pm-token"
JSON = {"X-Postmark-Server-Token": TOKEN, "Accept": "application/json"}


@pytest.fixture
def pm(tmp_path: Path) -> Iterator[str]:
    yield from serve_wsgi(postmark.create_app(server_token=TOKEN, state_dir=tmp_path))


@pytest.fixture
def gm(tmp_path: Path) -> Iterator[str]:
    yield from serve_wsgi(
        gmail.create_app(client_id="c", client_secret="s", refresh_token="r", state_dir=tmp_path)
    )


def test_postmark_rejects_a_bad_token_with_error_code_10(pm: str) -> None:
    answer = requests.post(f"{pm}/email", json=postmark_message("a@x.test"), timeout=5)
    assert (answer.status_code, answer.json()["ErrorCode"]) == (401, 10)


def test_postmark_batch_answers_200_with_per_message_errors(pm: str) -> None:
    requests.post(f"{pm}/_control/inactive", json={"addresses": ["gone@x.test"]}, timeout=5)
    batch = [
        postmark_message("a@x.test", "c-1"),
        postmark_message("gone@x.test", "c-2"),
        {"From": "x"},
    ]

    answer = requests.post(f"{pm}/email/batch", json=batch, headers=JSON, timeout=5)

    assert answer.status_code == 200
    assert [r["ErrorCode"] for r in answer.json()] == [0, 406, 300]
    assert "Found inactive addresses: gone@x.test." in answer.json()[1]["Message"]


def test_postmark_outbound_search_filters_by_metadata(pm: str) -> None:
    requests.post(f"{pm}/email", json=postmark_message("a@x.test", "c-1"), headers=JSON, timeout=5)
    requests.post(f"{pm}/email", json=postmark_message("b@x.test", "c-2"), headers=JSON, timeout=5)

    found = requests.get(
        f"{pm}/messages/outbound",
        params={"count": 50, "offset": 0, "metadata_correlation_id": "c-2"},
        headers=JSON,
        timeout=5,
    ).json()

    assert found["TotalCount"] == 1
    assert found["Messages"][0]["Recipients"] == ["b@x.test"]


def test_faults_fail_the_next_requests_then_heal_and_delays_slow_them(pm: str) -> None:
    requests.post(f"{pm}/_control/faults", json={"status": 503, "count": 2}, timeout=5)
    statuses = [
        requests.post(
            f"{pm}/email", json=postmark_message("a@x.test"), headers=JSON, timeout=5
        ).status_code
        for _ in range(3)
    ]
    requests.post(f"{pm}/_control/faults", json={"delay_ms": 150}, timeout=5)
    started = time.perf_counter()
    requests.post(f"{pm}/email", json=postmark_message("a@x.test"), headers=JSON, timeout=5)
    slow = time.perf_counter() - started
    requests.delete(f"{pm}/_control/faults", timeout=5)

    assert statuses == [503, 503, 200]
    assert slow >= 0.15


def _statuses(pm: str, n: int, path: str = "/email") -> list[int]:
    return [
        requests.post(
            f"{pm}{path}", json=postmark_message("a@x.test"), headers=JSON, timeout=5
        ).status_code
        for _ in range(n)
    ]


def test_fault_rules_apply_in_order_and_the_control_route_shows_what_is_left(pm: str) -> None:
    rules = [{"status": 503, "count": 3}, {"status": 400, "count": 1}]
    set_answer = requests.post(f"{pm}/_control/faults", json={"rules": rules}, timeout=5)

    statuses = _statuses(pm, 2)
    shown = requests.get(f"{pm}/_control/faults", timeout=5).json()
    statuses += _statuses(pm, 3)

    assert set_answer.status_code == 200
    assert statuses == [503, 503, 503, 400, 200]
    assert [(r["status"], r["left"], r["applied"]) for r in shown["rules"]] == [
        (503, 1, 2),
        (400, 1, 0),
    ]


def test_repeating_rules_make_a_service_flap(pm: str) -> None:
    rules = [{"status": 500, "count": 1}, {"count": 2}]
    requests.post(f"{pm}/_control/faults", json={"rules": rules, "repeat": True}, timeout=5)

    assert _statuses(pm, 7) == [500, 200, 200, 500, 200, 200, 500]


def test_a_rule_limited_to_a_path_lets_other_requests_through_unspent(pm: str) -> None:
    rule = {"status": 503, "count": 1, "path": "/email/batch"}
    requests.post(f"{pm}/_control/faults", json={"rules": [rule]}, timeout=5)

    single = _statuses(pm, 1)
    batch = requests.post(
        f"{pm}/email/batch", json=[postmark_message("a@x.test")], headers=JSON, timeout=5
    ).status_code

    assert (single, batch) == ([200], 503)


def test_a_delayed_rule_without_status_answers_late_but_does_the_work(pm: str) -> None:
    requests.post(
        f"{pm}/_control/faults", json={"rules": [{"delay_ms": 300, "count": 1}]}, timeout=5
    )

    with pytest.raises(requests.Timeout):
        requests.post(f"{pm}/email", json=postmark_message("a@x.test"), headers=JSON, timeout=0.1)
    sent = until_sent(pm, 1)

    assert len(sent) == 1


def until_sent(pm: str, n: int) -> list[dict[str, object]]:
    """The stand-in's sent messages once there are ``n`` (the late request finishes on its own)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        sent = requests.get(f"{pm}/_control/messages", timeout=5).json()["messages"]
        if len(sent) >= n:
            return list(sent)
        time.sleep(0.05)  # polling a server thread, bounded by the deadline
    raise AssertionError(f"fewer than {n} messages sent")


@pytest.mark.parametrize(
    "body",
    [[], {"rules": "x"}, {"rules": [{"status": 99}]}, {"rules": [{"colour": "red"}]}],
    ids=["list", "rules-not-list", "bad-status", "unknown-key"],
)
def test_a_malformed_fault_schedule_is_refused_with_400(pm: str, body: object) -> None:
    answer = requests.post(f"{pm}/_control/faults", json=body, timeout=5)

    assert answer.status_code == 400
    assert answer.json()["error"]


def test_gmail_token_refresh_then_import_dedupes_on_message_id(gm: str) -> None:
    bad = requests.post(
        f"{gm}/token",
        data={
            "grant_type": "refresh_token",
            "client_id": "c",
            "client_secret": "s",
            "refresh_token": "x",
        },
        timeout=5,
    )
    token = requests.post(
        f"{gm}/token",
        data={
            "grant_type": "refresh_token",
            "client_id": "c",
            "client_secret": "s",
            "refresh_token": "r",
        },
        timeout=5,
    ).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    raw = b"Message-ID: <one@x.test>\r\nSubject: Hi\r\n\r\nBody\r\n"

    first = requests.post(
        f"{gm}/gmail/v1/users/me/messages/import",
        json={"raw": base64.urlsafe_b64encode(raw).decode(), "labelIds": ["INBOX"]},
        headers=auth,
        timeout=5,
    ).json()
    again = requests.post(
        f"{gm}/upload/gmail/v1/users/me/messages/import?uploadType=media",
        data=raw,
        headers={**auth, "Content-Type": "message/rfc822"},
        timeout=5,
    ).json()
    listed = requests.get(f"{gm}/gmail/v1/users/me/messages", headers=auth, timeout=5).json()
    anonymous = requests.get(f"{gm}/gmail/v1/users/me/messages", timeout=5)

    assert bad.json()["error"] == "invalid_grant"
    assert first["id"] == again["id"]
    assert listed["resultSizeEstimate"] == 1
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["errors"][0]["reason"] == "authError"


def test_standins_keep_a_bounded_window_of_what_they_received(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailroom_local import faults, freescout

    monkeypatch.setattr(faults, "WINDOW", 3)
    fs_app = freescout.create_app(api_key="k", state_dir=tmp_path)
    pm_app = postmark.create_app(server_token=TOKEN, state_dir=tmp_path)
    conversation = {
        "type": "email",
        "mailboxId": 1,
        "subject": "s",
        "customer": {"email": "c@x.test"},
        "threads": [{"type": "customer", "text": "t"}],
    }
    fs, pm_client = fs_app.test_client(), pm_app.test_client()
    for n in range(5):
        fs.post("/api/conversations", json=conversation, headers={"X-FreeScout-API-Key": "k"})
        pm_client.post("/email", json=postmark_message(f"a{n}@x.test"), headers=JSON)
    held = fs.get("/_control/conversations").get_json()["conversations"]
    sent = pm_client.get("/_control/messages").get_json()["messages"]
    newer = pm_client.get(f"/_control/messages?since={sent[0]['Seq']}").get_json()
    requests_seen = pm_client.get("/_control/requests").get_json()["requests"]
    assert len(held) == len(sent) == len(requests_seen) == 3
    assert [m["To"] for m in sent] == ["a2@x.test", "a3@x.test", "a4@x.test"]
    assert len(newer["messages"]) == 2
    assert len(list((tmp_path / "freescout").iterdir())) == 3
    assert len(list((tmp_path / "postmark").iterdir())) == 3
