"""Settings, error policy, auth, claim checks and SNS envelopes."""

from __future__ import annotations

import base64
import json

import boto3
import pytest

from chalicelib.platform import claimcheck
from chalicelib.platform.auth import SignatureRejected, basic_auth_ok, sign, verify_signature
from chalicelib.platform.envelope import unwrap
from chalicelib.platform.errors import (
    ConfigurationError,
    PoisonMessageError,
    ProviderAuthError,
    ProviderTransientError,
    is_transient,
)
from chalicelib.platform.settings import Settings
from tests.conftest import REGION, Stage


def test_settings_defaults_follow_the_stage_naming_convention() -> None:
    settings = Settings.from_env({"AWS_REGION": "eu-west-1", "MAILROOM_STAGE": "prod"})
    assert (settings.routes_table, settings.state_table, settings.mail_bucket) == (
        "mailroom-prod-routes",
        "mailroom-prod-state",
        "mailroom-prod-mail",
    )
    assert settings.parameter("freescout/api-key") == "/mailroom/prod/freescout/api-key"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "AWS_REGION"),
        (
            {"AWS_REGION": "x", "MAILROOM_HTTP_TIMEOUT_SECONDS": "soon"},
            "MAILROOM_HTTP_TIMEOUT_SECONDS",
        ),
        (
            {"AWS_REGION": "x", "MAILROOM_FREESCOUT_IMPORTED": "maybe"},
            "MAILROOM_FREESCOUT_IMPORTED",
        ),
        (
            {"AWS_REGION": "x", "MAILROOM_IDEMPOTENCY_TTL_DAYS": "3"},
            "MAILROOM_IDEMPOTENCY_TTL_DAYS",
        ),
        ({"AWS_REGION": "x", "MAILROOM_LOG_LEVEL": "loud"}, "MAILROOM_LOG_LEVEL"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(env)
    assert caught.value.variable == variable


def test_missing_required_arn_names_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="MAILROOM_INBOUND_TOPIC_ARN"):
        _ = Settings.from_env({"AWS_REGION": "x"}).inbound_topic_arn


def test_error_policy_lives_on_the_class() -> None:
    assert is_transient(ProviderTransientError("503", provider="p"))
    assert not is_transient(ProviderAuthError("401", provider="p"))
    assert not is_transient(PoisonMessageError("bad"))
    assert is_transient(KeyError("a bug is retried, not dropped"))


def _basic(value: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(value.encode()).decode()}


def test_basic_auth_accepts_current_and_previous_only() -> None:
    valid = ("u:new", "u:old")
    assert basic_auth_ok(_basic("u:new"), valid)
    assert basic_auth_ok(_basic("u:old"), valid)
    assert not basic_auth_ok(_basic("u:other"), valid)
    assert not basic_auth_ok({"Authorization": "Basic !!!"}, valid)
    assert not basic_auth_ok({"Authorization": "Bearer abc"}, valid)
    assert not basic_auth_ok({}, valid)


def test_signature_round_trip_rotation_and_rejections() -> None:
    body = b'{"correlation_id": "c-1"}'
    good = {"X-Mailroom-Signature": sign(body, "old", timestamp=1000)}
    assert verify_signature(good, body, ["new", "old"], tolerance_seconds=300, now=1100) == 1000
    cases = {
        "signature does not match": (good, b"tampered", ["new", "old"], 1100),
        "stale signature timestamp": (good, body, ["old"], 1000 + 301),
        "missing signature header": ({}, body, ["old"], 1000),
        "malformed signature header": ({"X-Mailroom-Signature": "v1"}, body, ["old"], 1000),
    }
    for reason, (headers, data, secrets, now) in cases.items():
        with pytest.raises(SignatureRejected) as caught:
            verify_signature(headers, data, secrets, tolerance_seconds=300, now=now)
        assert caught.value.reason == reason


def test_claim_check_passes_small_payloads_and_offloads_big_ones(aws: Stage) -> None:
    assert claimcheck.check_in("small") == "small"
    big = "x" * 300_000

    pointer = claimcheck.check_in(big)

    assert json.loads(pointer)["mailroom_claim_check"]["size"] == 300_000
    assert claimcheck.check_out(pointer) == big
    assert claimcheck.check_out("small") == "small"


def test_tampered_or_missing_claim_check_is_poison(aws: Stage) -> None:
    pointer = claimcheck.check_in("y" * 300_000)
    key = json.loads(pointer)["mailroom_claim_check"]["key"]
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=aws.bucket, Key=key, Body=b"tampered")
    with pytest.raises(PoisonMessageError, match="digest"):
        claimcheck.check_out(pointer)
    s3.delete_object(Bucket=aws.bucket, Key=key)
    with pytest.raises(PoisonMessageError, match="missing"):
        claimcheck.check_out(pointer)


def test_envelope_unwraps_sns_notifications_and_passes_raw_bodies() -> None:
    envelope = {
        "Type": "Notification",
        "MessageId": "m",
        "TopicArn": "arn:aws:sns:us-east-1:1:t.fifo",
        "Message": '{"a": 1}',
        "Timestamp": "2026-11-22T00:00:00Z",
        "MessageAttributes": {"kind": {"Type": "String", "Value": "inbound"}},
    }
    assert unwrap(json.dumps(envelope)) == ('{"a": 1}', {"kind": "inbound"})
    assert unwrap('{"a": 1}') == ('{"a": 1}', {})
    with pytest.raises(PoisonMessageError):
        unwrap("not json")
