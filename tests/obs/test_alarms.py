"""The template's alarms read metrics our code emits, cover every failure mode, and page."""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

import app
from chalicelib.handlers.probe import checks as probe
from chalicelib.platform import metrics
from chalicelib.platform.errors import ProviderAuthError, ProviderTransientError, reason_of
from chalicelib.platform.logging import LOGGER_NAME, JsonFormatter, log_outcome
from mailroom_local.provision import load_template
from tests.obs.test_emf import assert_valid_emf

ROOT = Path(__file__).resolve().parents[2]
STAGE = "dev"
OURS = "mailroom/${Stage}"
FAILURE_MODES = {"F1", "F4", "F5", "F7", "F8", "F10", "F19", "Gmail authorization"}


def _sub(value: Any) -> Any:
    """A ``!Sub``/``!Ref`` value as this test names things (stage ``dev``)."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        return value["Fn::Sub"].replace("${Stage}", STAGE)
    if isinstance(value, dict) and "Ref" in value:
        return {"Ref": value["Ref"]}
    return value


def _of_type(kind: str) -> dict[str, dict[str, Any]]:
    return {
        k: v["Properties"] for k, v in load_template()["Resources"].items() if v["Type"] == kind
    }


ALARMS = _of_type("AWS::CloudWatch::Alarm")


def _dimensions(props: dict[str, Any]) -> dict[str, Any]:
    return {d["Name"]: _sub(d["Value"]) for d in props.get("Dimensions", [])}


def _emitted() -> set[tuple[str, str]]:
    """(metric, dimensions as JSON) that our code writes, gathered by running it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        for err in (
            ProviderTransientError("server error", provider="freescout", status_code=503),
            ProviderTransientError("HTTP 429", provider="postmark", status_code=429),
            ProviderAuthError("revoked", provider="gmail", error_code="invalid_grant"),
        ):
            log_outcome(
                "inbound_bridge",
                message_id="m",
                outcome="dead_lettered",
                duration_ms=1.0,
                error_class=type(err).__name__,
                reason=reason_of(err),
                disposition="poison",
            )
        for kind in probe.ProbeKind:
            probe._settle(probe.new_probe(kind), probe.ProbeStatus.PASSED, "ok", latency_ms=5.0)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    found = set()
    for line in stream.getvalue().splitlines():
        for name, dims in assert_valid_emf(json.loads(line)):
            found.add((name, json.dumps(dims, sort_keys=True)))
    return found


def test_every_alarm_pages_through_the_one_topic_and_names_a_mailroom_command() -> None:
    assert len(ALARMS) >= 30
    for logical, props in ALARMS.items():
        escalation = _sub(props["AlarmName"]).endswith("-age-12h")
        topic = "CriticalAlarmTopic" if escalation else "AlarmTopic"
        assert props["AlarmActions"] == [{"Ref": topic}], logical
        description = props["AlarmDescription"]["Fn::Sub"]
        assert re.search(r"Run `mailroom --stage \$\{Stage\} [a-z]", description), logical
        assert "README: When you are paged" in description, logical
        assert len(description) <= 1024


# The operator CLI's commands: what an alarm may tell the operator to run.
CLI = {
    "health": set(),
    "dlq": {"status", "peek", "analyze", "redrive", "discard", "quarantine"},
    "stop": set(),
    "resume": set(),
    "routes": {"list", "add", "set", "enable", "disable", "remove", "test"},
    "suppression": {"list", "check", "add", "remove"},
    "trace": set(),
    "probe": set(),
    "audit": {"list"},
    "outbound": {"provider"},
}


def test_every_command_an_alarm_names_is_one_the_operator_cli_has() -> None:
    for logical, props in ALARMS.items():
        description = props["AlarmDescription"]["Fn::Sub"]
        commands = re.findall(r"`mailroom --stage \$\{Stage\} ([a-z]+)(?: ([a-z]+))?", description)
        assert commands, logical
        for command, sub in commands:
            assert command in CLI, (logical, command)
            if CLI[command]:
                assert sub in CLI[command], (logical, command, sub)


def test_every_alarm_on_our_namespace_reads_a_metric_our_code_or_a_filter_emits() -> None:
    emitted = _emitted()
    filtered = {
        t["MetricName"]
        for f in _of_type("AWS::Logs::MetricFilter").values()
        for t in f["MetricTransformations"]
        if t["MetricNamespace"]["Fn::Sub"] == OURS
    }
    ours = {k: v for k, v in ALARMS.items() if v["Namespace"] == {"Fn::Sub": OURS}}
    assert len(ours) >= 7
    for logical, props in ours.items():
        dims = _dimensions(props)
        if props["MetricName"] in filtered:
            assert dims == {}, logical
            continue
        assert (props["MetricName"], json.dumps(dims, sort_keys=True)) in emitted, logical


def test_every_dead_letter_queue_and_source_queue_has_its_alarm() -> None:
    queues = {
        logical: _sub(props["QueueName"]) for logical, props in _of_type("AWS::SQS::Queue").items()
    }
    watched = {
        (p["MetricName"], _dimensions(p)["QueueName"])
        for p in ALARMS.values()
        if p["Namespace"] == "AWS/SQS"
    }
    redriven = [p for p in _of_type("AWS::SQS::Queue").values() if "RedrivePolicy" in p]
    subscriptions = [p for p in _of_type("AWS::SNS::Subscription").values() if "RedrivePolicy" in p]
    assert redriven
    assert subscriptions
    for props in redriven:
        dlq = queues[props["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]]
        assert ("ApproximateNumberOfMessagesVisible", dlq) in watched
        assert ("ApproximateAgeOfOldestMessage", _sub(props["QueueName"])) in watched
    for props in subscriptions:
        dlq = queues[props["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]]
        assert ("ApproximateNumberOfMessagesVisible", dlq) in watched


def test_every_function_of_the_app_has_error_and_throttle_alarms_and_the_access_filter() -> None:
    functions = {f"mailroom-{STAGE}"} | {
        f"mailroom-{STAGE}-{source.name}" for source in app.app.event_sources
    }
    watched = {
        (p["MetricName"], _dimensions(p)["FunctionName"])
        for p in ALARMS.values()
        if p["Namespace"] == "AWS/Lambda"
    }
    filtered = set()
    for props in _of_type("AWS::Logs::MetricFilter").values():
        name = props["LogGroupName"]["Fn::If"][2]
        filtered.add(_sub(name).removeprefix("/aws/lambda/"))
    for function in functions:
        assert ("Errors", function) in watched
        assert ("Throttles", function) in watched
        assert function in filtered


def _paged_table() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## When you are paged", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def test_every_failure_mode_in_the_readme_runbook_has_its_alarms_and_every_alarm_a_row() -> None:
    names = {_sub(p["AlarmName"]).removeprefix(f"mailroom-{STAGE}-") for p in ALARMS.values()}
    rows = _paged_table()
    modes = {row[0] for row in rows}
    assert {m.split()[0] if m.startswith("F") else m for m in modes} >= FAILURE_MODES
    for mode, alarms, *_ in rows:
        listed = re.findall(r"`([a-z0-9-]+)`", alarms)
        assert listed, mode
        assert set(listed) <= names, mode
    for props in ALARMS.values():
        label = props["AlarmDescription"]["Fn::Sub"].split(":", 1)[0]
        assert label in modes


def test_dashboard_widgets_read_metrics_of_the_catalogue() -> None:
    [dashboard] = _of_type("AWS::CloudWatch::Dashboard").values()
    body = json.loads(_sub(dashboard["DashboardBody"]).replace("${AWS::Region}", "us-east-1"))
    catalogue = {m.name: m for m in metrics.CATALOGUE}
    seen = 0
    for widget in body["widgets"]:
        for row in widget["properties"]["metrics"]:
            namespace, name, *rest = row
            if namespace != f"mailroom/{STAGE}" or name == "AccessDenied":
                continue
            pairs = [x for x in rest if isinstance(x, str)]
            dims = tuple(sorted(pairs[0::2]))
            assert dims in {tuple(sorted(s)) for s in catalogue[name].dimension_sets}, row
            seen += 1
    assert seen >= 10


@pytest.mark.parametrize("alarm", ["ProbeInboundAlarm", "ProbeOutboundAlarm"])
def test_probe_alarm_fires_on_a_failure_or_on_silence(alarm: str) -> None:
    props = ALARMS[alarm]
    assert props["TreatMissingData"] == "breaching"
    assert props["Statistic"] == "Minimum"
    assert props["ComparisonOperator"] == "LessThanThreshold"
    assert load_template()["Resources"][alarm]["Condition"] == "ProbeOn"


def test_a_dead_letter_older_than_12_hours_escalates_on_the_higher_severity_topic() -> None:
    redriven = [p for p in _of_type("AWS::SQS::Queue").values() if "RedrivePolicy" in p]
    queues = {
        logical: _sub(props["QueueName"]) for logical, props in _of_type("AWS::SQS::Queue").items()
    }
    escalations = {
        _dimensions(p)["QueueName"]: p
        for p in ALARMS.values()
        if p["AlarmActions"] == [{"Ref": "CriticalAlarmTopic"}]
    }
    for props in redriven:
        dlq = queues[props["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]]
        alarm = escalations[dlq]
        assert (alarm["MetricName"], alarm["Threshold"]) == ("ApproximateAgeOfOldestMessage", 43200)
