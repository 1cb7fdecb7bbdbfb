"""The end-to-end probe through the real webhook, bridge and sender against the stand-ins."""

from __future__ import annotations

import time
from collections.abc import Callable

import boto3
import pytest
import responses

from chalicelib.handlers import probe as scheduled
from chalicelib.handlers.probe import checks as probe
from chalicelib.platform.settings import Settings
from tests.conftest import REGION, Stage
from tests.obs.conftest import WEBHOOK_URL, Lines

pytestmark = pytest.mark.usefixtures("public_webhook")
LATER = 60.0


def _results(lines: Lines) -> list[dict[str, object]]:
    return lines.messages("probe result")


def test_inbound_probe_passes_once_its_conversation_exists_and_publishes_latency(
    probe_settings: Callable[[], Settings],
    freescout_url: str,
    pipelines: Callable[[], None],
    lines: Lines,
) -> None:
    settings = probe_settings()
    sent = probe.send_inbound_probe(settings)
    assert sent.status is probe.ProbeStatus.SENT
    assert probe.check_probes(settings) == []  # not in FreeScout yet: still pending

    pipelines()
    [settled] = [r for r in probe.check_probes(settings) if r.kind is probe.ProbeKind.INBOUND]

    assert settled.status is probe.ProbeStatus.PASSED
    assert settled.detail.startswith("conversation ")
    assert settled.latency_ms is not None
    [result] = _results(lines)
    assert result["probe"] == "inbound"
    assert result["ProbeSuccess"] == 1
    assert result["ProbeLatency"] == result["latency_ms"]
    assert probe.last_probe(settings)[probe.ProbeKind.INBOUND] == settled


def test_inbound_probe_refused_by_the_webhook_fails_at_once(
    probe_settings: Callable[[], Settings], lines: Lines
) -> None:
    settings = probe_settings()
    with responses.RequestsMock() as mock:  # e.g. the API's credentials drifted from SSM's
        mock.add(responses.POST, WEBHOOK_URL, status=401, json={"error": "unauthorized"})
        record = probe.send_inbound_probe(settings)

    assert record.status is probe.ProbeStatus.FAILED
    assert record.detail == "webhook answered 401"
    [result] = _results(lines)
    assert result["ProbeSuccess"] == 0
    assert "ProbeLatency" not in result
    assert probe.check_probes(settings) == []  # settled already: not checked again


def test_inbound_probe_not_seen_within_the_timeout_fails(
    probe_settings: Callable[[], Settings], freescout_url: str, lines: Lines
) -> None:
    settings = probe_settings()
    sent = probe.send_inbound_probe(settings)  # the bridge never runs

    assert probe.check_probes(settings, now=sent.sent_at + LATER) == []
    [failed] = probe.check_probes(settings, now=sent.sent_at + settings.probe_timeout_seconds + 1)

    assert failed.status is probe.ProbeStatus.FAILED
    assert failed.detail.startswith("not seen within")
    assert [r["ProbeSuccess"] for r in _results(lines)] == [0]
    summary = probe.last_result(settings)
    assert summary is not None
    assert summary.ok is False
    assert "inbound failed" in summary.summary


def test_outbound_probe_passes_when_the_delivery_log_says_sent(
    probe_settings: Callable[[], Settings],
    postmark_url: str,
    pipelines: Callable[[], None],
    lines: Lines,
) -> None:
    settings = probe_settings()
    sent = probe.send_outbound_probe(settings)
    pipelines()

    [settled] = probe.check_probes(settings)

    assert settled.probe_id == sent.probe_id
    assert settled.status is probe.ProbeStatus.PASSED
    assert [(r["probe"], r["ProbeSuccess"]) for r in _results(lines)] == [("outbound", 1)]


def test_outbound_probe_fails_when_postmark_rejects_it(
    probe_settings: Callable[[], Settings],
    pipelines: Callable[[], None],
    lines: Lines,
) -> None:
    settings = probe_settings()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru("http://127.0.0.1")
        mock.add(
            responses.POST,
            f"{settings.postmark_api_url}/email/batch",
            json=[{"ErrorCode": 300, "Message": "Invalid email request"}],
        )
        probe.send_outbound_probe(settings)
        pipelines()

    [settled] = probe.check_probes(settings)

    assert settled.status is probe.ProbeStatus.FAILED
    assert settled.detail == "delivery log says dead_lettered"
    assert [r["ProbeSuccess"] for r in _results(lines)] == [0]


def test_scheduled_run_settles_earlier_probes_then_sends_both(
    probe_settings: Callable[[], Settings],
    freescout_url: str,
    postmark_url: str,
    pipelines: Callable[[], None],
) -> None:
    first = scheduled.run(probe_settings())
    pipelines()
    second = scheduled.run(probe_settings())

    assert first["sent"] == {"inbound": "sent", "outbound": "sent"}
    assert first["settled"] == {}
    assert sorted(second["settled"].values()) == ["passed", "passed"]
    summary = probe.last_result(probe_settings())
    assert summary is not None
    assert summary.ok is True


def test_scheduled_run_does_nothing_while_disabled(
    probe_settings: Callable[[], Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILROOM_PROBE_ENABLED", "false")

    assert scheduled.run(probe_settings()) == {"status": "disabled"}
    assert probe.last_result(probe_settings()) is None


def test_unconfigured_probe_sends_nothing_and_names_the_setting(
    probe_settings: Callable[[], Settings], monkeypatch: pytest.MonkeyPatch, lines: Lines
) -> None:
    monkeypatch.delenv("MAILROOM_PROBE_WEBHOOK_URL")
    monkeypatch.delenv("MAILROOM_PROBE_FROM")

    summary = scheduled.run(probe_settings())

    assert summary["sent"] == {"inbound": "not_configured", "outbound": "not_configured"}
    reasons = {line["reason"] for line in lines.messages("probe not configured")}
    assert reasons == {
        "MAILROOM_PROBE_WEBHOOK_URL is not set",
        "MAILROOM_PROBE_FROM is not set",
    }
    assert _results(lines) == []  # no metric: the alarm's missing-data rule fires


def test_probe_records_expire_after_a_week(
    aws: Stage, probe_settings: Callable[[], Settings]
) -> None:
    settings = probe_settings()
    record = probe.send_outbound_probe(settings)
    item = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName=aws.state_table, Key={"PK": {"S": "PROBE#outbound"}, "SK": {"S": record.sort_key}}
    )["Item"]

    assert int(item["expires_at"]["N"]) - time.time() > 6 * 86_400


def test_a_freescout_outage_fails_the_inbound_probe_after_the_timeout_and_says_why(
    probe_settings: Callable[[], Settings], freescout_url: str
) -> None:
    import requests

    settings = probe_settings()
    sent = probe.send_inbound_probe(settings)
    requests.post(f"{freescout_url}/_control/faults", json={"status": 503, "count": 99}, timeout=5)

    assert probe.check_probes(settings, now=sent.sent_at + LATER) == []
    [failed] = probe.check_probes(settings, now=sent.sent_at + settings.probe_timeout_seconds + 1)

    assert failed.status is probe.ProbeStatus.FAILED
    assert "last check: freescout: server error" in failed.detail
