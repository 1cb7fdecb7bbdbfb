"""The CloudFormation-only path: chalice package with the merge template is complete and lints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mailroom_local.provision import load_template

ROOT = Path(__file__).resolve().parents[2]


def test_packaged_template_has_the_flag_and_the_cap_on_every_sqs_source_and_passes_cfn_lint(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    # AWS_REGION alone, as the README says: no AWS_DEFAULT_REGION, no ~/.aws/config.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_REGION="eu-west-1", AWS_CONFIG_FILE=str(tmp_path / "none"))
    subprocess.run(
        [sys.executable, "-m", "infra.package", "--stage", "prod", str(out)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    sam = json.loads((out / "sam.json").read_text())
    queue_names = {
        logical: spec["Properties"]["QueueName"]["Fn::Sub"].replace("${Stage}", "prod")
        for logical, spec in load_template()["Resources"].items()
        if spec["Type"] == "AWS::SQS::Queue"
    }
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    reserved = {
        _camel(name): settings.get("reserved_concurrency")
        for name, settings in config["stages"]["prod"]["lambda_functions"].items()
    }
    sources = [
        (name, event)
        for name, resource in sam["Resources"].items()
        for event in resource.get("Properties", {}).get("Events", {}).values()
        if event["Type"] == "SQS"
    ]

    assert sources, "no SQS event source in the packaged template"
    functions = {
        name: resource["Properties"]["Environment"]["Variables"]
        for name, resource in sam["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    for variables in functions.values():
        assert variables["MAILROOM_OUTBOUND_TOPIC_ARN"] == {"Ref": "OutboundTopic"}
        assert variables["MAILROOM_MAIL_BUCKET"] == {"Ref": "MailBucket"}
        assert variables["MAILROOM_STAGE"] == "prod"
    for name, event in sources:
        props = event["Properties"]
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        most = props["ScalingConfig"]["MaximumConcurrency"]
        assert 2 <= most <= max(2, reserved.get(name) or 1000), name
        [queue] = sam["Resources"][name]["DependsOn"]
        assert props["Queue"]["Fn::Sub"].endswith(":" + queue_names[queue])
        assert queue in sam["Resources"]
    lint = subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), str(out / "sam.json")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def test_committed_policy_files_are_the_generated_ones() -> None:
    from infra import policies

    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    for stage in policies.STAGES:
        functions = config["stages"][stage]["lambda_functions"]
        assert config["stages"][stage]["autogen_policy"] is False
        assert sorted(functions) == sorted(policies.FUNCTIONS)
        for function in policies.FUNCTIONS:
            assert functions[function]["iam_policy_file"] == policies.path(stage, function).name
            assert policies.path(stage, function).read_text() == policies.render(stage, function)
