"""``mailroom stop|resume`` and ``mailroom health`` against moto."""

from __future__ import annotations

import json

import boto3

from chalicelib.handlers.gmail_forwarder import record_auth_failure
from chalicelib.platform.settings import get_settings
from tests.cli.conftest import Invoke, dead_letter
from tests.conftest import REGION, STAGE, Stage


def test_stop_disables_the_mappings_and_resume_enables_them(
    aws: Stage, mailroom: Invoke, functions: dict[str, str]
) -> None:
    client = boto3.client("lambda", region_name=REGION)

    stopped = mailroom("stop", "inbound", "--reason", "freescout down", json_output=True)

    assert stopped.exit_code == 0, stopped.output
    assert json.loads(stopped.stdout) == [
        {"pipeline": "inbound", "mapping": functions["inbound_bridge"], "state": "Disabled"}
    ]
    assert client.get_event_source_mapping(UUID=functions["outbound_sender"])["State"] == "Enabled"
    assert (
        client.get_function_concurrency(FunctionName=f"mailroom-{STAGE}-inbound_bridge")[
            "ReservedConcurrentExecutions"
        ]
        == 5
    )  # not the kill switch

    resumed = mailroom("resume", "inbound", json_output=True)

    assert json.loads(resumed.stdout)[0]["state"] == "Enabled"
    actions = [r["action"] for r in json.loads(mailroom("audit", "list", json_output=True).stdout)]
    assert actions == ["pipeline.resume", "pipeline.stop"]


def test_stop_all_without_a_reason_is_a_usage_error(aws: Stage, mailroom: Invoke) -> None:
    result = mailroom("stop", "all")

    assert result.exit_code == 2
    assert "--reason" in result.output


def test_stop_of_an_unknown_pipeline_says_which_exist(aws: Stage, mailroom: Invoke) -> None:
    result = mailroom("stop", "nope", "--reason", "x")

    assert result.exit_code == 2
    assert "unknown pipeline 'nope'" in result.output


def test_health_is_healthy_on_a_well_formed_stage(
    aws: Stage, mailroom: Invoke, functions: dict[str, str]
) -> None:
    result = mailroom("health", json_output=True)

    report = json.loads(result.stdout)
    assert report["status"] == "HEALTHY", report
    assert result.exit_code == 0
    areas = {c["area"] for c in report["checks"]}
    assert {"queues/inbound", "subscription/inbound", "consumer/outbound", "ssm"} <= areas


def test_health_reports_a_stopped_pipeline_and_dead_letters_as_degraded(
    aws: Stage, mailroom: Invoke, functions: dict[str, str]
) -> None:
    mailroom("stop", "outbound", "--reason", "postmark rate limit")
    dead_letter(aws)

    result = mailroom("health")

    assert result.exit_code == 1
    assert "STOPPED" in result.output
    assert "1 dead letter(s)" in result.output
    assert result.output.rstrip().splitlines()[-1] == "Error: DEGRADED: see the reasons above"


def test_health_finds_a_broken_subscription_and_a_missing_parameter(
    aws: Stage, mailroom: Invoke, functions: dict[str, str]
) -> None:
    sns = boto3.client("sns", region_name=REGION)
    [sub] = sns.list_subscriptions_by_topic(TopicArn=aws.topics["inbound"])["Subscriptions"]
    sns.unsubscribe(SubscriptionArn=sub["SubscriptionArn"])
    boto3.client("ssm", region_name=REGION).delete_parameter(
        Name=f"/mailroom/{STAGE}/freescout/api-key"
    )

    report = json.loads(mailroom("health", json_output=True).stdout)

    assert report["status"] == "UNHEALTHY"
    details = {c["area"]: c["detail"] for c in report["checks"] if c["level"] == "UNHEALTHY"}
    assert "no subscription" in details["subscription/inbound"]
    assert "freescout/api-key" in details["ssm"]


def test_health_finds_a_queue_policy_that_shuts_the_topic_out(
    aws: Stage, mailroom: Invoke, functions: dict[str, str]
) -> None:
    boto3.client("sqs", region_name=REGION).set_queue_attributes(
        QueueUrl=aws.queues["outbound-sender"].url, Attributes={"Policy": ""}
    )

    report = json.loads(mailroom("health", json_output=True).stdout)

    details = {c["area"]: c["detail"] for c in report["checks"] if c["level"] == "UNHEALTHY"}
    assert details == {"subscription/outbound": "queue policy does not let the topic send (F4)"}


def test_health_without_consumers_is_unhealthy(aws: Stage, mailroom: Invoke) -> None:
    result = mailroom("health")

    assert result.exit_code == 1
    assert "no event source mapping: nothing consumes it" in result.output


def test_health_wants_an_authorization_in_ssm_for_every_gmail_route(
    aws: Stage, mailroom: Invoke, functions: dict[str, str]
) -> None:
    aws.put_route("box@example.com", "gmail", "box@example.com")

    report = json.loads(mailroom("health", json_output=True).stdout)

    [gmail] = [c for c in report["checks"] if c["area"] == "gmail"]
    assert (gmail["level"], gmail["detail"]) == (
        "UNHEALTHY",
        f"no authorization in SSM: /mailroom/{STAGE}/gmail/box_at_example.com",
    )


def test_health_reports_a_mailbox_the_forwarder_found_unauthorized(
    aws: Stage, mailroom: Invoke, functions: dict[str, str]
) -> None:
    aws.put_route("box@example.com", "gmail", "box@example.com")
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=f"/mailroom/{STAGE}/gmail/box_at_example.com", Value="{}", Type="SecureString"
    )
    healthy = json.loads(mailroom("health", json_output=True).stdout)
    record_auth_failure(get_settings(), "box@example.com", "invalid_grant")

    report = json.loads(mailroom("health", json_output=True).stdout)

    assert [c["level"] for c in healthy["checks"] if c["area"] == "gmail"] == ["HEALTHY"]
    [gmail] = [c for c in report["checks"] if c["area"] == "gmail"]
    assert gmail["level"] == "UNHEALTHY"
    assert gmail["detail"].startswith("authorization expired (invalid_grant, ")
