"""Facts about infra/template.yaml that let mail outlive the stack, encrypted and TLS-only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from infra.stateful import STATEFUL
from mailroom_local.provision import load_template

ROOT = Path(__file__).resolve().parents[2]


def _resources(*kinds: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in load_template()["Resources"].items() if v["Type"] in kinds}


def test_every_stateful_resource_is_retained_on_stack_delete_and_on_replacement() -> None:
    stateful = _resources(*STATEFUL)
    kinds = {spec["Type"] for spec in stateful.values()}

    assert kinds >= {
        "AWS::SQS::Queue",
        "AWS::DynamoDB::Table",
        "AWS::S3::Bucket",
        "AWS::Logs::LogGroup",
    }
    for logical_id, spec in stateful.items():
        assert spec.get("DeletionPolicy") in {"Retain", "Snapshot"}, logical_id
        assert spec.get("UpdateReplacePolicy") in {"Retain", "Snapshot"}, logical_id


def test_tables_are_deletion_protected_with_point_in_time_recovery() -> None:
    for logical_id, spec in _resources("AWS::DynamoDB::Table").items():
        props = spec["Properties"]
        assert props["DeletionProtectionEnabled"] is True, logical_id
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_every_queue_is_encrypted_at_rest_and_the_mail_topics_too() -> None:
    for logical_id, spec in _resources("AWS::SQS::Queue").items():
        assert spec["Properties"].get("SqsManagedSseEnabled") is True, logical_id
    topics = _resources("AWS::SNS::Topic")
    # SES and CloudWatch publish to the other two, which AWS's managed key does not allow.
    for logical_id in ("InboundTopic", "OutboundTopic"):
        assert topics[logical_id]["Properties"]["KmsMasterKeyId"] == "alias/aws/sns"


def test_the_bucket_is_versioned_and_old_versions_expire_where_objects_expire() -> None:
    [bucket] = _resources("AWS::S3::Bucket").values()
    props = bucket["Properties"]
    rules = props["LifecycleConfiguration"]["Rules"]

    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    expiring = [rule for rule in rules if "ExpirationInDays" in rule]
    assert {rule["Prefix"] for rule in expiring} >= {"raw/", "payloads/", "quarantine/"}
    for rule in expiring:
        assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] >= 1, rule["Id"]
    assert any(rule.get("ExpiredObjectDeleteMarker") for rule in rules)


def test_the_bucket_policy_refuses_every_request_without_tls() -> None:
    [policy] = _resources("AWS::S3::BucketPolicy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]

    [deny] = [s for s in statements if s["Effect"] == "Deny"]
    assert deny["Principal"] == "*"
    assert deny["Action"] == "s3:*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    resources = [r["Fn::Sub"] for r in deny["Resource"]]
    assert sorted(resources) == [
        "arn:aws:s3:::mailroom-${Stage}-mail-${AWS::AccountId}",
        "arn:aws:s3:::mailroom-${Stage}-mail-${AWS::AccountId}/*",
    ]


def test_cfn_lint_reports_no_stateful_resource_without_a_retain_policy() -> None:
    found = subprocess.run(
        [
            str(Path(sys.executable).with_name("cfn-lint")),
            *("--include-checks", "I"),
            *("--format", "parseable"),
            "--",
            str(ROOT / "infra" / "template.yaml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )

    assert "I3011" not in found.stdout
    assert "I3013" not in found.stdout
