"""Creates a stage's resources in moto from ``infra/template.yaml``: one definition for all.

moto's own CloudFormation skips SNS subscriptions and queue policies, so the template is
read here and each resource is created with the same API calls CloudFormation would make.
Only what the template uses is understood (``!Ref``, ``!Sub``, ``!GetAtt``); anything else
fails loudly rather than being skipped.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import yaml

from mailroom_local import observability

TEMPLATE = Path(__file__).resolve().parent.parent / "infra" / "template.yaml"
ACCOUNT_ID = "123456789012"  # moto's default account


class _Loader(yaml.SafeLoader):
    """YAML loader that turns CloudFormation's short tags into their long form."""


for _tag in ("Ref", "Sub", "GetAtt"):
    _name = "Ref" if _tag == "Ref" else f"Fn::{_tag}"

    def _construct(loader: yaml.SafeLoader, node: yaml.Node, name: str = _name) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if name == "Fn::GetAtt":
                value = value.split(".", 1)
        else:
            value = loader.construct_sequence(node, deep=True)
        return {name: value}

    _Loader.add_constructor(f"!{_tag}", _construct)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as data: a fresh copy each time (callers may change theirs), parsed once
    per version of the file (parsing takes longer than provisioning a whole stage in moto)."""
    return copy.deepcopy(_parsed(path, path.stat().st_mtime_ns))


@lru_cache(maxsize=4)
def _parsed(path: Path, mtime_ns: int) -> dict[str, Any]:
    return dict(yaml.load(path.read_text(), Loader=_Loader))  # noqa: S506 - SafeLoader subclass


@dataclass
class Queue:
    url: str
    arn: str
    dlq_url: str


@dataclass
class Resources:
    stage: str
    bucket: str = ""
    topics: dict[str, str] = field(default_factory=dict)
    queues: dict[str, Queue] = field(default_factory=dict)

    @property
    def routes_table(self) -> str:
        return f"mailroom-{self.stage}-routes"

    @property
    def state_table(self) -> str:
        return f"mailroom-{self.stage}-state"


class _Builder:
    """Resolves intrinsic functions against what has been created so far."""

    def __init__(self, clients: Any, parameters: dict[str, str]) -> None:
        self.clients = clients
        self.parameters = parameters
        self.physical: dict[str, str] = {}  # logical id → Ref value
        self.arns: dict[str, str] = {}  # logical id → Arn

    def resolve(self, value: Any) -> Any:
        if isinstance(value, dict) and len(value) == 1:
            ((name, arg),) = value.items()
            if name == "Ref":
                return self.parameters[arg] if arg in self.parameters else self.physical[arg]
            if name == "Fn::GetAtt":
                assert arg[1] == "Arn", f"unsupported attribute {arg}"
                return self.arns[arg[0]]
            if name == "Fn::Sub":
                return re.sub(r"\$\{([^}]+)\}", lambda m: str(self.resolve({"Ref": m[1]})), arg)
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return value


def provision(
    clients: Any,
    stage: str,
    *,
    secrets: dict[str, str],
    visibility_seconds: int | None = None,
    default_route: dict[str, str] | None = None,
    template: Path = TEMPLATE,
    observed: bool = True,
) -> Resources:
    """Create every resource of the template for ``stage``; ``clients(service)`` gives boto3
    (asked once per service: building a client costs more than most of the calls it makes).
    Unless ``observed``, the alarms, dashboard, log groups and metric filters are left
    out: two thirds of the calls, which a test of the mail's path does not look at."""
    clients = cache(clients)
    doc = load_template(template)
    parameters = {name: str(p.get("Default", "")) for name, p in doc["Parameters"].items()}
    parameters.update({"Stage": stage, "AWS::AccountId": ACCOUNT_ID})
    if visibility_seconds is not None:
        parameters["QueueVisibilitySeconds"] = str(visibility_seconds)
    build = _Builder(clients, parameters)
    resources = doc["Resources"]
    order = {
        "AWS::SQS::Queue": 0,
        "AWS::SNS::Topic": 1,
        "AWS::S3::Bucket": 1,
        "AWS::SQS::QueuePolicy": 2,
        "AWS::SNS::TopicPolicy": 2,
        "AWS::S3::BucketPolicy": 2,
        "AWS::SES::ReceiptRuleSet": 2,
        "AWS::SES::ReceiptRule": 4,
        "AWS::SES::ConfigurationSet": 2,
        "AWS::SES::ConfigurationSetEventDestination": 4,
    }
    conditions = {
        name: _condition(build.resolve(spec)) for name, spec in doc.get("Conditions", {}).items()
    }
    # Queues that are someone's DLQ first, so redrive policies can name them.
    for logical, spec in sorted(
        resources.items(),
        key=lambda kv: (order.get(kv[1]["Type"], 3), "RedrivePolicy" in kv[1]["Properties"]),
    ):
        if "Condition" in spec and not conditions[spec["Condition"]]:
            continue
        if not observed and spec["Type"] in observability.KINDS:
            continue
        if not observability.provision(build, doc, logical, spec):  # alarms, dashboard, …
            _create(build, logical, spec["Type"], build.resolve(spec["Properties"]))
    found = Resources(stage=stage, bucket=build.physical.get("MailBucket", ""))
    for logical, spec in resources.items():
        if spec["Type"] == "AWS::SNS::Topic":
            name = build.resolve(spec["Properties"]["TopicName"])
            found.topics[name.split(f"mailroom-{stage}-")[1].removesuffix(".fifo")] = (
                build.physical[logical]
            )
        if spec["Type"] == "AWS::SQS::Queue" and "RedrivePolicy" in spec["Properties"]:
            url = build.physical[logical]
            dlq_arn = build.resolve(spec["Properties"]["RedrivePolicy"])["deadLetterTargetArn"]
            [dlq] = [name for name, arn in build.arns.items() if arn == dlq_arn]
            key = url.rsplit("/", 1)[1].split(f"mailroom-{stage}-")[1].removesuffix(".fifo")
            found.queues[key] = Queue(url=url, arn=build.arns[logical], dlq_url=build.physical[dlq])
    _seed(clients, stage, found, secrets, default_route)
    return found


def _condition(spec: Any) -> bool:
    """The template's conditions (``Fn::Not`` over ``Fn::Equals``), resolved."""
    if isinstance(spec, dict) and "Fn::Not" in spec:
        return not _condition(spec["Fn::Not"][0])
    if isinstance(spec, dict) and "Fn::Equals" in spec:
        left, right = spec["Fn::Equals"]
        return bool(left == right)
    raise ValueError(f"the local stack cannot evaluate the condition {spec}")


def _create_ses(build: _Builder, logical: str, kind: str, props: dict[str, Any]) -> None:
    """SES inbound: topic and bucket policies, the receipt rule set and rules."""
    clients = build.clients
    if kind == "AWS::SNS::TopicPolicy":
        for arn in props["Topics"]:
            clients("sns").set_topic_attributes(
                TopicArn=arn,
                AttributeName="Policy",
                AttributeValue=json.dumps(props["PolicyDocument"]),
            )
    elif kind == "AWS::S3::BucketPolicy":
        clients("s3").put_bucket_policy(
            Bucket=props["Bucket"], Policy=json.dumps(_without_tls_only(props["PolicyDocument"]))
        )
    elif kind == "AWS::SES::ReceiptRuleSet":
        clients("ses").create_receipt_rule_set(RuleSetName=props["RuleSetName"])
        build.physical[logical] = props["RuleSetName"]
    elif kind == "AWS::SES::ReceiptRule":
        clients("ses").create_receipt_rule(RuleSetName=props["RuleSetName"], Rule=props["Rule"])
    elif kind == "AWS::SES::ConfigurationSet":
        # moto's SESv2 lacks CreateConfigurationSetEventDestination; its v1 API has both.
        clients("ses").create_configuration_set(ConfigurationSet={"Name": props["Name"]})
        build.physical[logical] = props["Name"]
    elif kind == "AWS::SES::ConfigurationSetEventDestination":
        destination = dict(props["EventDestination"])
        destination["SNSDestination"] = destination.pop("SnsDestination")
        clients("ses").create_configuration_set_event_destination(
            ConfigurationSetName=props["ConfigurationSetName"], EventDestination=destination
        )
    else:
        raise ValueError(f"the local stack cannot create {kind} ({logical})")


def _without_tls_only(policy: dict[str, Any]) -> dict[str, Any]:
    """The bucket policy less its deny-plain-HTTP statement: the embedded AWS speaks HTTP, and
    moto evaluates that condition, so kept it would refuse every local request."""
    kept = [
        statement
        for statement in policy.get("Statement", [])
        if "aws:SecureTransport" not in json.dumps(statement.get("Condition", {}))
    ]
    return {**policy, "Statement": kept}


def _create(build: _Builder, logical: str, kind: str, props: dict[str, Any]) -> None:
    clients = build.clients
    if kind.startswith("AWS::SES::") or kind in {"AWS::SNS::TopicPolicy", "AWS::S3::BucketPolicy"}:
        _create_ses(build, logical, kind, props)
    elif kind == "AWS::SQS::Queue":
        attributes = {
            k: json.dumps(v)
            if isinstance(v, dict)
            else str(v).lower()
            if isinstance(v, bool)
            else str(v)
            for k, v in props.items()
            if k != "QueueName"
        }
        sqs = clients("sqs")
        url = sqs.create_queue(QueueName=props["QueueName"], Attributes=attributes)["QueueUrl"]
        build.physical[logical] = url
        build.arns[logical] = (
            f"arn:aws:sqs:{sqs.meta.region_name}:{ACCOUNT_ID}:{props['QueueName']}"
        )
    elif kind == "AWS::SNS::Topic":
        # moto 5.2 accepts FifoThroughputScope but neither keeps nor enforces it: locally a
        # FIFO topic deduplicates across the whole topic, stricter than per group; our group
        # ids derive from the message, so a re-publish is dropped either way.
        attributes = {
            k: str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in props.items()
            if k != "TopicName"
        }
        arn = clients("sns").create_topic(Name=props["TopicName"], Attributes=attributes)[
            "TopicArn"
        ]
        build.physical[logical] = build.arns[logical] = arn
    elif kind == "AWS::SQS::QueuePolicy":
        for url in props["Queues"]:
            clients("sqs").set_queue_attributes(
                QueueUrl=url, Attributes={"Policy": json.dumps(props["PolicyDocument"])}
            )
    elif kind == "AWS::SNS::Subscription":
        attributes = {"RawMessageDelivery": str(props.get("RawMessageDelivery", False)).lower()}
        if "RedrivePolicy" in props:
            attributes["RedrivePolicy"] = json.dumps(props["RedrivePolicy"])
        clients("sns").subscribe(
            TopicArn=props["TopicArn"],
            Protocol=props["Protocol"],
            Endpoint=props["Endpoint"],
            Attributes=attributes,
        )
    elif kind == "AWS::DynamoDB::Table":
        dynamodb = clients("dynamodb")
        dynamodb.create_table(
            TableName=props["TableName"],
            KeySchema=props["KeySchema"],
            AttributeDefinitions=props["AttributeDefinitions"],
            BillingMode=props["BillingMode"],
        )
        if "TimeToLiveSpecification" in props:
            dynamodb.update_time_to_live(
                TableName=props["TableName"],
                TimeToLiveSpecification=props["TimeToLiveSpecification"],
            )
        build.physical[logical] = props["TableName"]
    elif kind == "AWS::S3::Bucket":
        clients("s3").create_bucket(Bucket=props["BucketName"])
        build.physical[logical] = props["BucketName"]
    else:
        raise ValueError(f"the local stack cannot create {kind} ({logical})")


def _seed(
    clients: Any,
    stage: str,
    found: Resources,
    secrets: dict[str, str],
    default_route: dict[str, str] | None,
) -> None:
    ssm = clients("ssm")
    for name, value in secrets.items():
        ssm.put_parameter(
            Name=f"/mailroom/{stage}/{name}", Value=value, Type="SecureString", Overwrite=True
        )
    if default_route is None:
        return
    now = datetime.now(UTC).isoformat(timespec="seconds")
    clients("dynamodb").put_item(
        TableName=found.routes_table,
        Item={
            "PK": {"S": f"ROUTE#{default_route['pattern']}"},
            "SK": {"S": "RULE#v1"},
            "action": {"S": default_route["action"]},
            "target": {"S": default_route.get("target", "")},
            "enabled": {"BOOL": True},
            "description": {"S": default_route.get("description", "")},
            "created_at": {"S": now},
            "updated_at": {"S": now},
        },
    )
