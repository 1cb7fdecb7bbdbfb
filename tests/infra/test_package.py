"""The CloudFormation-only path: chalice package with the merge template is complete and lints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mailroom_local.provision import load_template

ROOT = Path(__file__).resolve().parents[2]


def test_packaged_template_has_the_flag_on_every_sqs_source_and_passes_cfn_lint(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "MAILROOM_STAGE": "dev"}
    subprocess.run(
        [sys.executable, "-m", "infra.package", "--stage", "dev", str(out)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    sam = json.loads((out / "sam.json").read_text())
    queue_names = {
        logical: spec["Properties"]["QueueName"]["Fn::Sub"].replace("${Stage}", "dev")
        for logical, spec in load_template()["Resources"].items()
        if spec["Type"] == "AWS::SQS::Queue"
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
        assert variables["MAILROOM_STAGE"] == "dev"
    for name, event in sources:
        props = event["Properties"]
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
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
