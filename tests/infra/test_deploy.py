"""The deploy command's steps against moto, and its one-line errors."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

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


def _function_with_sqs_mapping(name: str = "inbound_bridge", reserved: int | None = None) -> str:
    iam = boto3.client("iam", region_name=REGION)
    try:
        role = iam.get_role(RoleName="mailroom-dev")["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        role = iam.create_role(
            RoleName="mailroom-dev",
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
        )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return {}\n")
    lam = boto3.client("lambda", region_name=REGION)
    function = lam.create_function(
        FunctionName=f"mailroom-dev-{name}",
        Runtime="python3.11",
        Role=role,
        Handler="app.handler",
        Code={"ZipFile": code.getvalue()},
    )["FunctionArn"]
    if reserved is not None:
        lam.put_function_concurrency(FunctionName=function, ReservedConcurrentExecutions=reserved)
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName=f"q-{name}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return str(lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=function)["UUID"])


def _deployed(*mappings: tuple[str, str]) -> dict[str, Any]:
    """``.chalice/deployed/<stage>.json`` as Chalice writes it, for (function, uuid) pairs."""
    lam = boto3.client("lambda", region_name=REGION)
    return {
        "resources": [
            {"resource_type": "rest_api", "name": "rest_api"},
            *(
                {
                    "resource_type": "sqs_event",
                    "name": f"{function}-sqs-event-source",
                    "event_uuid": uuid,
                    "lambda_arn": lam.get_event_source_mapping(UUID=uuid)["FunctionArn"],
                }
                for function, uuid in mappings
            ),
        ]
    }


def _config(**reserved: int) -> dict[str, Any]:
    return {
        "lambda_functions": {},
        "stages": {
            "dev": {
                "lambda_functions": {
                    name: {"reserved_concurrency": value} for name, value in reserved.items()
                }
            }
        },
    }


def test_every_sqs_event_source_gets_report_batch_item_failures_and_is_verified() -> None:
    with mock_aws():
        uuid = _function_with_sqs_mapping()
        deployed = _deployed(("inbound_bridge", uuid))
        lam = boto3.client("lambda", region_name=REGION)

        first = deploy.configure_event_sources(lam, deployed, _config(), "dev")
        second = deploy.configure_event_sources(lam, deployed, _config(), "dev")  # safe again

        mapping = lam.get_event_source_mapping(UUID=uuid)
    assert (
        first
        == second
        == [deploy.EventSource(uuid, "inbound_bridge", deploy.DEFAULT_MAXIMUM_CONCURRENCY)]
    )
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_every_sqs_source_is_capped_at_its_functions_reserved_concurrency() -> None:
    functions = {"inbound_bridge": 20, "outbound_sender": 10, "gmail_forwarder": 3}
    with mock_aws():
        uuids = {
            name: _function_with_sqs_mapping(name, reserved) for name, reserved in functions.items()
        }
        uuids["router"] = _function_with_sqs_mapping("router")  # no reserved concurrency
        lam = boto3.client("lambda", region_name=REGION)

        done = deploy.configure_event_sources(
            lam, _deployed(*uuids.items()), _config(**functions), "dev"
        )

        kept = {
            name: lam.get_event_source_mapping(UUID=uuid)["ScalingConfig"]["MaximumConcurrency"]
            for name, uuid in uuids.items()
        }
    assert kept == {**functions, "router": deploy.DEFAULT_MAXIMUM_CONCURRENCY}
    assert sorted(source.function for source in done) == sorted(uuids)
    assert all(source.warning is None for source in done)


def test_a_lower_reserved_concurrency_in_aws_wins_over_the_config() -> None:
    with mock_aws():
        uuid = _function_with_sqs_mapping("outbound_sender", reserved=4)
        lam = boto3.client("lambda", region_name=REGION)

        [source] = deploy.configure_event_sources(
            lam, _deployed(("outbound_sender", uuid)), _config(outbound_sender=10), "dev"
        )

        kept = lam.get_event_source_mapping(UUID=uuid)["ScalingConfig"]
    assert source.maximum_concurrency == 4
    assert kept == {"MaximumConcurrency": 4}


def test_a_reservation_below_two_gets_awss_least_value_and_a_warning_naming_the_function() -> None:
    with mock_aws():
        uuid = _function_with_sqs_mapping("bouncer", reserved=1)
        lam = boto3.client("lambda", region_name=REGION)

        [source] = deploy.configure_event_sources(
            lam, _deployed(("bouncer", uuid)), _config(bouncer=1), "dev"
        )

        kept = lam.get_event_source_mapping(UUID=uuid)["ScalingConfig"]
    assert kept == {"MaximumConcurrency": 2}
    assert source.warning is not None
    assert source.warning.startswith("bouncer: reserved concurrency 1 is below 2")


def test_stage_reserved_concurrency_overrides_the_top_level_one() -> None:
    config = _config(inbound_bridge=20)
    config["lambda_functions"] = {"inbound_bridge": {"reserved_concurrency": 50}}

    assert deploy.reserved_concurrency(config, "dev", "inbound_bridge") == 20
    assert deploy.reserved_concurrency(config, "prod", "inbound_bridge") == 50
    assert deploy.maximum_concurrency(20) == 20
    assert deploy.maximum_concurrency(None) == deploy.DEFAULT_MAXIMUM_CONCURRENCY


def test_committed_prod_config_caps_every_queue_function_at_its_reservation() -> None:
    config = json.loads(deploy.CONFIG.read_text())
    functions = config["stages"]["prod"]["lambda_functions"]

    for name, settings in functions.items():
        reserved = settings.get("reserved_concurrency")
        if name != "api_handler" and reserved is not None:
            most = deploy.maximum_concurrency(deploy.reserved_concurrency(config, "prod", name))
            assert most <= max(2, reserved), name


def test_aws_region_alone_names_the_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "")  # recorded, so the value set below is undone
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")

    deploy.use_aws_region()

    assert boto3.session.Session().region_name == "eu-west-1"


def test_a_pipeline_stopped_before_a_deploy_stays_stopped() -> None:
    with mock_aws():
        stopped_uuid = _function_with_sqs_mapping("outbound_sender")
        running_uuid = _function_with_sqs_mapping("inbound_bridge")
        lam = boto3.client("lambda", region_name=REGION)
        lam.update_event_source_mapping(UUID=stopped_uuid, Enabled=False)  # mailroom stop
        deployed = _deployed(("outbound_sender", stopped_uuid), ("inbound_bridge", running_uuid))

        stopped = deploy.stopped_functions(lam, deployed)
        deploy.configure_event_sources(lam, deployed, _config(), "dev", stopped)

        states = {
            u: lam.get_event_source_mapping(UUID=u)["State"] for u in (stopped_uuid, running_uuid)
        }
    assert stopped == {"outbound_sender"}
    assert states[stopped_uuid] in {"Disabled", "Disabling"}
    assert states[running_uuid] in {"Enabled", "Enabling"}


@pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")
def test_stack_parameters_pass_through_and_keep_their_previous_value_on_update() -> None:
    with mock_aws():
        cloudformation = boto3.client("cloudformation", region_name=REGION)
        deploy.deploy_stack(cloudformation, "dev", {"AlarmEmail": "oncall@example.com"})
        deploy.deploy_stack(cloudformation, "dev", {"ProbeEnabled": "true"})

        [stack] = cloudformation.describe_stacks(StackName="mailroom-dev")["Stacks"]
    values = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert values["AlarmEmail"] == "oncall@example.com"
    assert values["ProbeEnabled"] == "true"


def test_cached_chalice_packages_are_pruned_in_place(tmp_path: Path) -> None:
    package = tmp_path / "abc-python3.11.zip"
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("botocore/data/big.json", "x" * 100_000)
        archive.writestr("googleapiclient/discovery_cache/documents/gmail.v1.json", "{}")
        archive.writestr("googleapiclient/discovery_cache/documents/drive.v3.json", "y" * 10_000)
        archive.writestr("chalicelib/__init__.py", "")

    assert deploy.prune_cached_packages(tmp_path) == [package]

    with zipfile.ZipFile(package) as archive:
        names = set(archive.namelist())
    assert names == {
        "googleapiclient/discovery_cache/documents/gmail.v1.json",
        "chalicelib/__init__.py",
    }
    assert deploy.prune_cached_packages(tmp_path) == []  # already pruned: left alone
