"""The deploy's change set against moto's CloudFormation and a recorded AWS answer."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from infra import changeset, deploy
from tests.conftest import REGION

EVENTS = Path(__file__).resolve().parents[1] / "events"
STACK = "mailroom-dev"
BRIDGE_QUEUE = 'QueueName: !Sub "mailroom-${Stage}-inbound-bridge.fifo"'

# moto's CloudFormation cannot create queue, topic or bucket policies, subscriptions, alarms
# or SES rules (it warns and skips them); the deploy's change sets do not need them.
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")


def _clients(name: str) -> Any:
    return boto3.client(name, region_name=REGION)


def _template(tmp_path: Path, edit: Callable[[str], str]) -> Path:
    path = tmp_path / "template.yaml"
    path.write_text(edit(deploy.TEMPLATE.read_text()))
    return path


def _renamed_bridge_queue(text: str) -> str:
    # A new QueueName is a replacement in AWS ("RequiresRecreation: Always").
    assert BRIDGE_QUEUE in text
    return text.replace(BRIDGE_QUEUE, BRIDGE_QUEUE.replace("bridge.fifo", "bridge-v2.fifo"))


def _without(*logical_ids: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        for logical_id in logical_ids:
            text, found = re.subn(rf"\n  {logical_id}:\n(?:    .*\n|\s*\n)*", "\n", text)
            assert found == 1, logical_id
        return text

    return edit


def _mail_in(queue_url: str, count: int = 1) -> None:
    for n in range(count):
        _clients("sqs").send_message(
            QueueUrl=queue_url,
            MessageBody=json.dumps({"mail": n}),
            MessageGroupId="recipient",
            MessageDeduplicationId=f"mail-{n}",
        )


def _held(queue_url: str) -> int:
    attributes = _clients("sqs").get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def test_deploy_refuses_to_replace_a_queue_holding_mail_and_leaves_it_as_it_was(
    tmp_path: Path,
) -> None:
    renamed = _template(tmp_path, _renamed_bridge_queue)
    printed: list[str] = []
    with mock_aws():
        cloudformation = _clients("cloudformation")
        outputs = deploy.deploy_stack(cloudformation, "dev", clients=_clients, out=printed.append)
        queue = outputs["InboundBridgeQueueUrl"]
        _mail_in(queue)

        with pytest.raises(deploy.DeployError) as refused:
            deploy.deploy_stack(
                cloudformation, "dev", clients=_clients, out=printed.append, template=renamed
            )

        left = cloudformation.list_change_sets(StackName=STACK)["Summaries"]
        deployed = cloudformation.get_template(StackName=STACK)["TemplateBody"]
        held = _held(queue)
    message = str(refused.value)
    assert refused.value.exit_code == changeset.REFUSED_EXIT_CODE
    assert message.startswith("refused: this change set would replace or remove 1 stateful")
    assert f"- InboundBridgeQueue (AWS::SQS::Queue {queue}): possibly replaced" in message
    assert "now: holds about 1 message\n" in message
    assert "dlq redrive" in message
    assert message.endswith("--allow-replace InboundBridgeQueue")
    lines = "\n".join(printed).splitlines()
    assert any(re.match(r"Modify +InboundBridgeQueue .* AT RISK$", line) for line in lines)
    assert [s["ExecutionStatus"] for s in left] == ["EXECUTE_COMPLETE"]  # the first deploy's
    assert "inbound-bridge-v2" not in deployed
    assert held == 1


def test_naming_the_queue_lets_the_same_change_set_run(tmp_path: Path) -> None:
    renamed = _template(tmp_path, _renamed_bridge_queue)
    printed: list[str] = []
    with mock_aws():
        cloudformation = _clients("cloudformation")
        deploy.deploy_stack(cloudformation, "dev", out=printed.append)

        deploy.deploy_stack(
            cloudformation,
            "dev",
            allow_replace=["InboundBridgeQueue"],
            out=printed.append,
            template=renamed,
        )

        deployed = cloudformation.get_template(StackName=STACK)["TemplateBody"]
    assert "inbound-bridge-v2.fifo" in deployed
    assert printed[-1].startswith("allowed by --allow-replace: InboundBridgeQueue and its messages")


def test_deploy_refuses_to_remove_dead_letter_queues_from_the_stack(tmp_path: Path) -> None:
    smaller = _template(tmp_path, _without("BouncerQueue", "BouncerDeadLetterQueue"))
    with mock_aws():
        cloudformation = _clients("cloudformation")
        outputs = deploy.deploy_stack(cloudformation, "dev", clients=_clients, out=lambda _: None)
        dlq = _clients("sqs").get_queue_url(QueueName="mailroom-dev-bouncer-dlq")["QueueUrl"]
        _clients("sqs").send_message(QueueUrl=dlq, MessageBody="a dead letter")

        with pytest.raises(deploy.DeployError) as refused:
            deploy.deploy_stack(
                cloudformation, "dev", clients=_clients, out=lambda _: None, template=smaller
            )

        held = _held(dlq)
    message = str(refused.value)
    assert outputs
    assert "- BouncerDeadLetterQueue (AWS::SQS::Queue" in message
    assert "removed from the stack; it is kept (retain policy)" in message
    assert "now: holds about 1 message\n" in message
    assert message.splitlines()[-1].startswith("to go ahead once it is safe: --allow-replace ")
    assert "--allow-replace BouncerQueue" in message.splitlines()[-1]
    assert "--allow-replace BouncerDeadLetterQueue" in message.splitlines()[-1]
    assert held == 1


def test_redeploying_the_same_template_changes_nothing_and_keeps_the_outputs() -> None:
    printed: list[str] = []
    with mock_aws():
        cloudformation = _clients("cloudformation")
        first = deploy.deploy_stack(cloudformation, "dev", out=printed.append)
        printed.clear()
        again = deploy.deploy_stack(cloudformation, "dev", out=printed.append)

    assert again == first
    assert "AT RISK" not in "\n".join(printed)


# --- the same deploy over CloudFormation's own recorded answer -------------------------------
# moto's change sets carry no Replacement or PolicyAction; AWS's do.

CHANGE_SET = (
    "arn:aws:cloudformation:us-east-1:123456789012:changeSet/"
    "mailroom-dev-20261204T120000Z/5b1c1e53-6b7a-4f0e-9d7e-2f0c4f1f3a10"
)
STACK_ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/mailroom-dev/0f6a3e40"


def _recorded() -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(
        (EVENTS / "cloudformation_change_set_replaces_state.json").read_text()
    )
    return answer


def _stack(status: str = "UPDATE_COMPLETE") -> dict[str, Any]:
    return {
        "Stacks": [
            {
                "StackName": STACK,
                "StackId": STACK_ID,
                "CreationTime": datetime(2026, 11, 1, tzinfo=UTC),
                "StackStatus": status,
                "Parameters": [{"ParameterKey": "Stage", "ParameterValue": "dev"}],
                "Outputs": [{"OutputKey": "StateTableName", "OutputValue": "mailroom-dev-state"}],
            }
        ]
    }


def _stub_until_review(stub: Stubber, change_set: dict[str, Any]) -> None:
    stack = {"StackName": STACK}
    named = {"ChangeSetName": CHANGE_SET, "StackName": STACK}
    stub.add_response("describe_stacks", _stack(), stack)
    stub.add_response("describe_stacks", _stack(), stack)
    stub.add_response(
        "create_change_set",
        {"Id": CHANGE_SET, "StackId": STACK_ID},
        {
            "StackName": STACK,
            "ChangeSetName": ANY,
            "ChangeSetType": "UPDATE",
            "TemplateBody": ANY,
            "Parameters": ANY,
            "Capabilities": ["CAPABILITY_IAM"],
        },
    )
    stub.add_response("describe_change_set", change_set, named)
    stub.add_response("describe_change_set", change_set, named)
    stub.add_response("list_stack_resources", {"StackResourceSummaries": []}, stack)
    stub.add_response(
        "get_template",
        {"TemplateBody": deploy.TEMPLATE.read_text()},
        {"StackName": STACK, "TemplateStage": "Original"},
    )


def test_a_replacement_cloudformation_reports_is_refused_with_the_mail_the_queue_holds() -> None:
    with mock_aws():
        queue = _clients("sqs").create_queue(
            QueueName="mailroom-dev-inbound-bridge.fifo", Attributes={"FifoQueue": "true"}
        )["QueueUrl"]
        _mail_in(queue, 2)
        cloudformation = boto3.client("cloudformation", region_name=REGION)
        with Stubber(cloudformation) as stub:
            _stub_until_review(stub, _recorded())
            stub.add_response(
                "delete_change_set", {}, {"ChangeSetName": CHANGE_SET, "StackName": STACK}
            )

            with pytest.raises(deploy.DeployError) as refused:
                deploy.deploy_stack(cloudformation, "dev", clients=_clients, out=lambda _: None)

            stub.assert_no_pending_responses()
        held = _held(queue)
    message = str(refused.value)
    assert refused.value.exit_code == 3
    assert "- InboundBridgeQueue (AWS::SQS::Queue " in message
    assert "replaced, because QueueName (Always) changes" in message
    assert "now: holds about 2 messages" in message
    assert "StateTable (AWS::DynamoDB::Table mailroom-dev-state): possibly replaced" in message
    assert "ApiErrorsAlarm" not in message
    assert held == 2


def test_a_change_set_whose_every_risk_is_named_is_executed() -> None:
    printed: list[str] = []
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    with Stubber(cloudformation) as stub:
        _stub_until_review(stub, _recorded())
        stub.add_response("describe_stacks", _stack(), {"StackName": STACK})
        stub.add_response(
            "execute_change_set", {}, {"ChangeSetName": CHANGE_SET, "StackName": STACK}
        )
        stub.add_response("describe_stacks", _stack("UPDATE_COMPLETE"), {"StackName": STACK})
        stub.add_response("describe_stacks", _stack(), {"StackName": STACK})

        outputs = deploy.deploy_stack(
            cloudformation,
            "dev",
            allow_replace=["InboundBridgeQueue", "StateTable", "ProbeLogGroup"],
            out=printed.append,
        )

        stub.assert_no_pending_responses()
    assert outputs == {"StateTableName": "mailroom-dev-state"}
    assert printed[0] == "change set mailroom-dev-20261204T120000Z for stack mailroom-dev:"
    assert [line.split(":")[0] for line in printed[2:]] == ["allowed by --allow-replace"] * 3


def test_a_change_set_cloudformation_finds_empty_is_deleted_and_reported_as_no_changes() -> None:
    printed: list[str] = []
    empty = {
        **_recorded(),
        "Status": "FAILED",
        "ExecutionStatus": "UNAVAILABLE",
        "StatusReason": "The submitted information didn't contain changes. Submit different "
        "information to create a change set.",
        "Changes": [],
    }
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    with Stubber(cloudformation) as stub:
        stub.add_response("describe_stacks", _stack(), {"StackName": STACK})
        stub.add_response("describe_stacks", _stack(), {"StackName": STACK})
        stub.add_response("create_change_set", {"Id": CHANGE_SET, "StackId": STACK_ID}, None)
        stub.add_response("describe_change_set", empty, None)
        stub.add_response("delete_change_set", {}, None)
        stub.add_response("describe_stacks", _stack(), {"StackName": STACK})

        deploy.deploy_stack(cloudformation, "dev", out=printed.append)

        stub.assert_no_pending_responses()
    assert printed == ["stack mailroom-dev: no changes"]


def test_the_package_path_reviews_a_change_set_made_by_aws_cloudformation_deploy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    renamed = _template(tmp_path, _renamed_bridge_queue)
    with mock_aws():
        cloudformation = _clients("cloudformation")
        deploy.deploy_stack(cloudformation, "dev", out=lambda _: None)
        # What `aws cloudformation deploy --no-execute-changeset` leaves for review.
        made = cloudformation.create_change_set(
            StackName=STACK,
            ChangeSetName="from-package",
            ChangeSetType="UPDATE",
            TemplateBody=renamed.read_text(),
            Parameters=[{"ParameterKey": "Stage", "ParameterValue": "dev"}],
            Capabilities=["CAPABILITY_IAM"],
        )

        refused = changeset.main(["--stack-name", STACK, "--change-set-name", made["Id"]])
        remade = cloudformation.create_change_set(
            StackName=STACK,
            ChangeSetName="from-package-again",
            ChangeSetType="UPDATE",
            TemplateBody=renamed.read_text(),
            Parameters=[{"ParameterKey": "Stage", "ParameterValue": "dev"}],
            Capabilities=["CAPABILITY_IAM"],
        )
        allowed = changeset.main(
            [
                *("--stack-name", STACK, "--change-set-name", remade["Id"]),
                *("--allow-replace", "InboundBridgeQueue"),
            ]
        )

    captured = capsys.readouterr()
    assert refused == changeset.REFUSED_EXIT_CODE
    assert "error: refused: this change set would replace or remove 1 stateful" in captured.err
    assert allowed == 0
    assert captured.out.rstrip().endswith("stack mailroom-dev: change set executed")
