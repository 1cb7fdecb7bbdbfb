"""``python -m infra.package --stage <stage> OUT``: the CloudFormation-only deployment path.

Builds a merge template from ``infra/template.yaml`` (the same resources ``make deploy``
creates) plus, for every ``on_sqs_message`` handler, ``FunctionResponseTypes:
[ReportBatchItemFailures]``, ``ScalingConfig.MaximumConcurrency`` (as ``make deploy`` sets it)
and a dependency on the queue created in the same stack, then runs ``chalice package
--merge-template``. Deploy ``OUT/sam.json`` with ``aws cloudformation package``, then
``aws cloudformation deploy --no-execute-changeset`` and ``python -m infra.changeset``, which
refuses a change set that replaces or removes state, as ``make deploy`` does. ``AWS_REGION``
alone is enough.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def merge_template(stage: str) -> dict[str, Any]:
    """The template's resources, and the SQS event sources of the app bound to them."""
    os.environ["MAILROOM_STAGE"] = stage
    sys.path.insert(0, str(ROOT))
    import app
    from mailroom_local.provision import load_template

    template = load_template()
    template["Parameters"]["Stage"]["Default"] = stage
    queues = {
        props["QueueName"]["Fn::Sub"].replace("${Stage}", stage): logical
        for logical, spec in template["Resources"].items()
        if spec["Type"] == "AWS::SQS::Queue"
        for props in [spec["Properties"]]
    }
    resources: dict[str, Any] = dict(template["Resources"])
    # What `make deploy` writes into .chalice/config.json from the stack's outputs, the
    # packaged functions read straight from the stack's own resources.
    from infra.deploy import (
        CONFIG,
        OUTPUT_VARIABLES,
        concurrency_warning,
        maximum_concurrency,
        reserved_concurrency,
    )

    config = json.loads(CONFIG.read_text())

    variables = {
        variable: template["Outputs"][output]["Value"]
        for output, variable in OUTPUT_VARIABLES.items()
    }
    # Named as `chalice deploy` names them, so the template's alarms and log groups match.
    functions = {"APIHandler": f"mailroom-{stage}"} | {
        _camel(s.name): f"mailroom-{stage}-{s.name}" for s in app.app.event_sources
    }
    for function, name in functions.items():
        resources[function] = {
            "Properties": {"FunctionName": name, "Environment": {"Variables": dict(variables)}}
        }
    for source in app.app.event_sources:
        if type(source).__name__ != "SQSEventConfig":
            continue
        function = _camel(source.name)
        reserved = reserved_concurrency(config, stage, source.name)
        warning = concurrency_warning(source.name, reserved)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        # Chalice already names the queue by ARN (Fn::Sub of the same name this stack
        # creates); a merged Fn::GetAtt would be mixed into that dict, so bind the two by
        # DependsOn instead: the mapping is created after the stack's queue.
        resources[function]["DependsOn"] = [queues[source.queue]]
        resources[function]["Properties"]["Events"] = {
            f"{function}SqsEventSource": {
                "Properties": {
                    "FunctionResponseTypes": ["ReportBatchItemFailures"],
                    "ScalingConfig": {"MaximumConcurrency": maximum_concurrency(reserved)},
                }
            }
        }
    return {
        "Parameters": template["Parameters"],
        "Conditions": template.get("Conditions", {}),
        "Resources": resources,
        "Outputs": template["Outputs"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.package")
    parser.add_argument("--stage", required=True)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,19}", args.stage):
        print("error: a stage is lowercase letters, digits and dashes", file=sys.stderr)
        return 2
    from infra.deploy import DeployError, use_aws_region

    use_aws_region()
    try:
        template = merge_template(args.stage)
    except DeployError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    with tempfile.TemporaryDirectory() as scratch:
        merge = Path(scratch) / "merge-template.json"
        merge.write_text(json.dumps(template, indent=2))
        chalice = Path(sys.executable).with_name("chalice")
        done = subprocess.run(
            [
                str(chalice),
                "package",
                "--stage",
                args.stage,
                "--merge-template",
                str(merge),
                str(args.out),
            ],
            cwd=ROOT,
            env={**os.environ, "MAILROOM_STAGE": args.stage},
            check=False,
        )
    if done.returncode == 0:
        # The shipped package: 10 MB zipped instead of 42 MB (bench/package_size.py, README).
        from infra.prune import prune

        deployment = args.out / "deployment.zip"
        pruned = args.out / "deployment.pruned.zip"
        prune(deployment, pruned)
        pruned.replace(deployment)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
