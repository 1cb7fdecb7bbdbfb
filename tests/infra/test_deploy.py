"""The deploy command's steps against moto, and its one-line errors."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from infra import deploy
from tests.conftest import REGION


def _no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_missing_credentials_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _no_credentials(monkeypatch, tmp_path)

    code = deploy.main(["--stage", "dev"])

    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: no AWS credentials found")
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_missing_region_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")

    code = deploy.main(["--stage", "dev"])

    assert code == 2
    assert capsys.readouterr().err.startswith("error: no AWS region set")


# moto's CloudFormation does not model queue policies or SNS subscriptions (it warns and
# skips them); the local stack creates them itself, see mailroom_local/provision.py.
@pytest.mark.filterwarnings("ignore:Tried to parse AWS..SQS..QueuePolicy:UserWarning")
@pytest.mark.filterwarnings("ignore:Tried to parse AWS..SNS..Subscription:UserWarning")
# moto's CloudFormation cannot create SNS topic or S3 bucket policies (the SES receipt rules
# depend on them); it warns and skips them, which is all this test needs.
@pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")
def test_stack_outputs_are_written_into_the_stage_config(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"stages": {"dev": {"environment_variables": {"X": "1"}}}}))
    with mock_aws():
        outputs = deploy.deploy_stack(boto3.client("cloudformation", region_name=REGION), "dev")
        again = deploy.deploy_stack(boto3.client("cloudformation", region_name=REGION), "dev")

    deploy.write_environment(config, "dev", outputs)
    deploy.write_environment(config, "dev", again)

    env = json.loads(config.read_text())["stages"]["dev"]["environment_variables"]
    assert env["X"] == "1"
    assert env["MAILROOM_STAGE"] == "dev"
    assert env["MAILROOM_INBOUND_TOPIC_ARN"].endswith(":mailroom-dev-inbound.fifo")
    assert env["MAILROOM_STATE_TABLE"] == "mailroom-dev-state"


def _function_with_sqs_mapping() -> str:
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(
        RoleName="mailroom-dev",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return {}\n")
    lam = boto3.client("lambda", region_name=REGION)
    function = lam.create_function(
        FunctionName="mailroom-dev-inbound_bridge",
        Runtime="python3.11",
        Role=role,
        Handler="app.handler",
        Code={"ZipFile": code.getvalue()},
    )["FunctionArn"]
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return str(lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=function)["UUID"])


def test_every_sqs_event_source_gets_report_batch_item_failures_and_is_verified() -> None:
    with mock_aws():
        uuid = _function_with_sqs_mapping()
        deployed = {
            "resources": [
                {"resource_type": "rest_api", "name": "rest_api"},
                {"resource_type": "sqs_event", "name": "inbound_bridge-sqs", "event_uuid": uuid},
            ]
        }
        lam = boto3.client("lambda", region_name=REGION)

        first = deploy.enable_partial_batch_responses(lam, deployed)
        second = deploy.enable_partial_batch_responses(lam, deployed)  # re-running is safe

        mapping = lam.get_event_source_mapping(UUID=uuid)
    assert first == second == [uuid]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
