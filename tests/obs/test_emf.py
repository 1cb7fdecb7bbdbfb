"""Outcome lines carry valid Embedded Metric Format, and the provider signals the alarms read."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from botocore.exceptions import ClientError

from chalicelib.platform import metrics
from chalicelib.platform.batch import SqsRecord, run_records
from chalicelib.platform.errors import (
    PoisonMessageError,
    ProviderAuthError,
    ProviderTransientError,
    reason_of,
)
from chalicelib.platform.logging import LOGGED_FIELDS, log_outcome
from mailroom_local.provision import load_template
from tests.obs.conftest import Lines

UNITS = {
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
    "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
    "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second",
    "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second",
    "Terabits/Second", "Count/Second", "None",
}  # fmt: skip


def assert_valid_emf(line: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
    """Check ``line`` against the EMF specification; the (metric, dimensions) it publishes."""
    meta = line["_aws"]
    assert isinstance(meta["Timestamp"], int)
    assert meta["Timestamp"] > 1_600_000_000_000  # epoch milliseconds
    published = []
    assert meta["CloudWatchMetrics"]
    for directive in meta["CloudWatchMetrics"]:
        assert set(directive) <= {"Namespace", "Dimensions", "Metrics"}
        assert 1 <= len(directive["Namespace"]) <= 255
        assert 1 <= len(directive["Metrics"]) <= 100
        for dimension_set in directive["Dimensions"]:
            assert 1 <= len(dimension_set) <= 30
            for name in dimension_set:
                assert isinstance(line[name], str), f"dimension {name} must be a string member"
        for metric in directive["Metrics"]:
            assert 1 <= len(metric["Name"]) <= 255
            assert metric.get("Unit", "None") in UNITS
            value = line[metric["Name"]]
            assert isinstance(value, int | float)
            assert not isinstance(value, bool)
            for dimension_set in directive["Dimensions"]:
                published.append((metric["Name"], {d: line[d] for d in dimension_set}))
    assert set(line) <= LOGGED_FIELDS | {"timestamp_utc"}
    return published


def _outcome(lines: Lines) -> dict[str, Any]:
    [line] = lines.messages("message outcome")
    return line


def test_success_line_publishes_count_and_duration_per_pipeline_and_outcome(lines: Lines) -> None:
    log_outcome("inbound_bridge", message_id="m-1", outcome="success", duration_ms=12.34)

    published = assert_valid_emf(_outcome(lines))

    assert ("Messages", {"event_type": "inbound_bridge", "outcome": "success"}) in published
    assert ("Messages", {"event_type": "inbound_bridge"}) in published
    assert ("HandlerDuration", {"event_type": "inbound_bridge"}) in published
    assert _outcome(lines)["HandlerDuration"] == 12.3
    assert _outcome(lines)["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "mailroom/test"


@pytest.mark.parametrize(
    ("err", "provider", "signal"),
    [
        (ProviderTransientError("server error: x", provider="freescout", status_code=503),
         "freescout", "unavailable"),
        (ProviderTransientError("request timed out", provider="freescout"),
         "freescout", "unavailable"),
        (ProviderTransientError("HTTP 429", provider="postmark", status_code=429),
         "postmark", "rate_limited"),
        (ProviderTransientError("too many", provider="postmark", error_code=429),
         "postmark", "rate_limited"),
        (ProviderTransientError("maintenance", provider="postmark", error_code=100),
         "postmark", "unavailable"),
        (ProviderAuthError("token revoked", provider="gmail", status_code=400,
                           error_code="invalid_grant"), "gmail", "auth_invalid"),
        (ProviderTransientError("slow down", provider="ses", status_code=400,
                                error_code="Throttling"), "ses", "rate_limited"),
    ],
)  # fmt: skip
def test_provider_failures_become_provider_signals_from_the_reason_the_batch_logs(
    lines: Lines, err: Exception, provider: str, signal: str
) -> None:
    log_outcome(
        "some_pipeline",
        message_id="m-1",
        outcome="retry",
        duration_ms=1.0,
        error_class=type(err).__name__,
        reason=reason_of(err),
    )

    line = _outcome(lines)
    published = assert_valid_emf(line)
    assert ("ProviderErrors", {"provider": provider, "provider_signal": signal}) in published


class GmailAuthRevoked(ProviderAuthError):
    """Like the Gmail client's: a subclass logs its own class name."""


def test_a_revoked_gmail_grant_is_auth_invalid_whatever_the_subclass(lines: Lines) -> None:
    err = GmailAuthRevoked("re-authorize", provider="gmail", status_code=400)
    log_outcome(
        "gmail_forwarder",
        message_id="m-1",
        outcome="dead_lettered",
        duration_ms=1.0,
        error_class=type(err).__name__,
        reason=reason_of(err),
    )

    signal = {"provider": "gmail", "provider_signal": "auth_invalid"}
    assert ("ProviderErrors", signal) in assert_valid_emf(_outcome(lines))


def test_a_non_provider_failure_counts_no_provider_error(lines: Lines) -> None:
    err = PoisonMessageError("not a Postmark inbound payload: MessageID")
    log_outcome(
        "inbound_bridge",
        message_id="m-1",
        outcome="dead_lettered",
        duration_ms=1.0,
        error_class="PoisonMessageError",
        reason=reason_of(err),
    )

    line = _outcome(lines)
    published = assert_valid_emf(line)
    assert "provider" not in line
    assert ("DeadLetters", {"disposition": "poison"}) in published
    assert ("DeadLetters", {"event_type": "inbound_bridge", "disposition": "poison"}) in published


def test_the_batch_runner_outcome_line_is_valid_emf_with_the_dead_letter_disposition(
    aws: Any, lines: Lines
) -> None:
    def handler(record: SqsRecord, context: Any) -> str:
        if record.message_id == "poison":
            raise PoisonMessageError("not JSON")
        raise ProviderTransientError("server error", provider="freescout", status_code=502)

    arn = aws.queues["inbound-bridge"].arn
    records = [
        SqsRecord("poison", "r1", "{", arn, {"MessageGroupId": "a"}, {}),
        SqsRecord("slow", "r2", "{}", arn, {"MessageGroupId": "b"}, {}),
    ]
    run_records(records, handler, event_type="inbound_bridge")

    poison, slow = lines.messages("message outcome")
    assert poison["outcome"] == "dead_lettered"
    assert ("DeadLetters", {"disposition": "poison"}) in assert_valid_emf(poison)
    signal = {"provider": "freescout", "provider_signal": "unavailable"}
    assert ("ProviderErrors", signal) in assert_valid_emf(slow)


def test_an_aws_access_denied_reaches_the_outcome_line_for_the_metric_filter(
    lines: Lines,
) -> None:
    err = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "PutItem")
    log_outcome(
        "inbound_bridge",
        message_id="m-1",
        outcome="retry",
        duration_ms=1.0,
        error_class="ClientError",
        reason=reason_of(err),
    )

    # CloudWatch matches unstructured terms: the line's words against the filter's terms.
    words = set(re.split(r"[^A-Za-z0-9_]+", json.dumps(_outcome(lines))))
    filters = [
        spec["Properties"]["FilterPattern"]
        for spec in load_template()["Resources"].values()
        if spec["Type"] == "AWS::Logs::MetricFilter"
        and spec["Properties"]["MetricTransformations"][0]["MetricName"] == "AccessDenied"
    ]
    assert filters
    for pattern in filters:
        terms = {t.strip('"') for t in re.findall(r'\?("[^"]+"|\S+)', pattern)}
        assert words & terms, pattern


def test_namespace_follows_the_stage_unless_set() -> None:
    assert metrics.namespace({"MAILROOM_STAGE": "prod"}) == "mailroom/prod"
    assert metrics.namespace({"MAILROOM_METRICS_NAMESPACE": "acme/mail"}) == "acme/mail"
    assert metrics.namespace({}) == "mailroom/local"


def test_a_message_that_exhausts_its_attempts_counts_as_an_exhausted_dead_letter(
    aws: Any, lines: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.platform.aws import reset_clients

    monkeypatch.setenv("MAILROOM_MAX_ATTEMPTS", "1")
    reset_clients()
    queue = aws.queues["inbound-bridge"]
    record = SqsRecord(
        "m-1", "r1", "{}", queue.arn, {"MessageGroupId": "g", "ApproximateReceiveCount": "1"}, {}
    )

    def handler(record: SqsRecord, context: Any) -> str:
        raise ProviderTransientError("server error", provider="freescout", status_code=503)

    run_records([record], handler, event_type="inbound_bridge")

    line = _outcome(lines)
    assert line["outcome"] == "dead_lettered"
    published = assert_valid_emf(line)
    assert ("DeadLetters", {"disposition": "exhausted"}) in published
    assert ("ProviderErrors", {"provider": "freescout", "provider_signal": "unavailable"}) in (
        published
    )


def test_the_http_edge_outcome_line_carries_the_outcome_metrics_too(aws: Any, lines: Lines) -> None:
    from chalicelib.handlers import webhooks

    reply = webhooks.postmark_inbound({"Content-Type": "application/json"}, b"{}")

    line = _outcome(lines)
    assert line["status_code"] == reply.status == 401
    published = assert_valid_emf(line)
    assert ("Messages", {"event_type": "postmark_inbound_webhook", "outcome": "refused"}) in (
        published
    )
