"""Facts about infra/template.yaml that keep the no-loss promise, and that local follows it."""

from __future__ import annotations

import json
from pathlib import Path

import boto3

from chalicelib.platform.settings import Settings
from mailroom_local.provision import load_template
from tests.conftest import REGION, Stage

ROOT = Path(__file__).resolve().parents[2]


def _resources(kind: str) -> dict[str, dict[str, object]]:
    doc = load_template()
    return {k: v["Properties"] for k, v in doc["Resources"].items() if v["Type"] == kind}


def test_every_consumed_queue_has_a_crash_loop_backstop_well_above_the_attempt_limit() -> None:
    queues = _resources("AWS::SQS::Queue")
    consumed = {k: v for k, v in queues.items() if "RedrivePolicy" in v}
    assert consumed
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    timeouts = [
        function.get("lambda_timeout", stage.get("lambda_timeout", 60))
        for stage in config["stages"].values()
        for function in stage.get("lambda_functions", {}).values()
    ]
    assert timeouts
    default_visibility = int(load_template()["Parameters"]["QueueVisibilitySeconds"]["Default"])
    assert default_visibility >= 6 * max(timeouts)
    for props in consumed.values():
        policy = props["RedrivePolicy"]
        assert isinstance(policy, dict)
        assert policy["maxReceiveCount"] >= 6 * Settings.from_env({"AWS_REGION": "x"}).max_attempts
        dlq = queues[policy["deadLetterTargetArn"]["Fn::GetAtt"][0]]
        assert dlq["MessageRetentionPeriod"] == 1209600
        assert dlq.get("FifoQueue", False) is props.get("FifoQueue", False)


def test_every_subscription_has_its_own_dead_letter_queue() -> None:
    subscriptions = _resources("AWS::SNS::Subscription")
    assert subscriptions
    for props in subscriptions.values():
        if props["Protocol"] != "sqs":  # the alarm topic's e-mail subscription
            continue
        assert props["RawMessageDelivery"] is False
        assert "RedrivePolicy" in props


def test_state_table_expires_records_and_bucket_is_private_and_encrypted() -> None:
    [state] = [t for t in _resources("AWS::DynamoDB::Table").values() if "TimeToLive" in str(t)]
    assert state["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    [bucket] = _resources("AWS::S3::Bucket").values()
    assert all(bucket["PublicAccessBlockConfiguration"].values())  # type: ignore[union-attr]
    expiring = {r["Prefix"] for r in bucket["LifecycleConfiguration"]["Rules"]}  # type: ignore[index]
    assert {"quarantine/", "rejected/"} <= expiring


def test_every_fifo_queue_and_topic_runs_in_high_throughput_mode() -> None:
    fifo_queues = {k: v for k, v in _resources("AWS::SQS::Queue").items() if v.get("FifoQueue")}
    fifo_topics = {k: v for k, v in _resources("AWS::SNS::Topic").items() if v.get("FifoTopic")}
    assert fifo_queues
    assert fifo_topics
    for props in fifo_queues.values():
        assert props["DeduplicationScope"] == "messageGroup"
        assert props["FifoThroughputLimit"] == "perMessageGroupId"
    for props in fifo_topics.values():
        assert props["FifoThroughputScope"] == "MessageGroup"


def test_local_provisioning_follows_the_template(aws: Stage) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    queue = aws.queues["inbound-bridge"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["All"])["Attributes"]
    assert json.loads(attributes["RedrivePolicy"])["maxReceiveCount"] == 30
    assert attributes["VisibilityTimeout"] == "360"
    assert attributes["DeduplicationScope"] == "messageGroup"
    assert attributes["FifoThroughputLimit"] == "perMessageGroupId"
    assert "sns.amazonaws.com" in attributes["Policy"]
    sns = boto3.client("sns", region_name=REGION)
    [subscription] = sns.list_subscriptions_by_topic(TopicArn=aws.topics["inbound"])[
        "Subscriptions"
    ]
    sub_attributes = sns.get_subscription_attributes(
        SubscriptionArn=subscription["SubscriptionArn"]
    )["Attributes"]
    assert "inbound-sub-dlq.fifo" in sub_attributes["RedrivePolicy"]
