"""``python -m infra.deploy --stage <stage>``: template, Chalice, then the event source mappings.

Steps: check AWS credentials and region (``AWS_REGION`` alone is enough); create or update the
stack ``mailroom-<stage>`` from ``infra/template.yaml`` through a change set, printed first and
refused when it would replace or remove a stateful resource that ``--allow-replace`` does not
name (``infra/changeset.py``); write its outputs into the stage's environment variables in
``.chalice/config.json``; ``chalice deploy``; on every SQS event source mapping listed in
``.chalice/deployed/<stage>.json`` set ``FunctionResponseTypes`` and
``ScalingConfig.MaximumConcurrency`` and read both back. Re-running is safe. Failures print one
line and exit non-zero, never a traceback; a refusal (exit 3) adds what is at stake.

A pipeline stopped with ``mailroom stop`` (its mapping disabled) stays stopped through a
deploy, and the deploy says so. Template parameters are given as ``--parameter Key=Value``;
on an update every parameter not given keeps its previous value. Before ``chalice deploy``
the cached dependency package in ``.chalice/deployments`` is pruned (``infra/prune.py``), so
the deployed zip is the small one ``python -m infra.package`` ships.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "infra" / "template.yaml"
CONFIG = ROOT / ".chalice" / "config.json"
FLAG = "ReportBatchItemFailures"
# Lambda's bounds for ScalingConfig.MaximumConcurrency on an SQS event source.
MIN_CONCURRENCY, MAX_CONCURRENCY = 2, 1000
# A function without reserved concurrency still shares the account's pool; cap its pollers so a
# burst cannot throttle it (a throttled batch returns with its receive count raised).
DEFAULT_MAXIMUM_CONCURRENCY = 10
# Stack output → environment variable the functions read.
OUTPUT_VARIABLES = {
    "InboundTopicArn": "MAILROOM_INBOUND_TOPIC_ARN",
    "OutboundTopicArn": "MAILROOM_OUTBOUND_TOPIC_ARN",
    "MailBucketName": "MAILROOM_MAIL_BUCKET",
    "RoutesTableName": "MAILROOM_ROUTES_TABLE",
    "StateTableName": "MAILROOM_STATE_TABLE",
}


class DeployError(Exception):
    """A step failed; the message is the one line the operator sees."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def check_credentials(session: Any) -> str:
    """The account id, or a DeployError saying what is missing."""
    from botocore.exceptions import BotoCoreError, ClientError

    if session.get_credentials() is None:
        raise DeployError("no AWS credentials found; set AWS_PROFILE or AWS_ACCESS_KEY_ID", 2)
    if not session.region_name:
        raise DeployError("no AWS region set; set AWS_REGION or AWS_DEFAULT_REGION", 2)
    try:
        return str(session.client("sts").get_caller_identity()["Account"])
    except (BotoCoreError, ClientError) as err:
        raise DeployError(f"AWS rejected the credentials: {err}", 2) from err


def deploy_stack(
    cloudformation: Any,
    stage: str,
    parameters: dict[str, str] | None = None,
    *,
    allow_replace: Iterable[str] = (),
    clients: Callable[[str], Any] | None = None,
    out: Callable[[str], None] = print,
    template: Path = TEMPLATE,
) -> dict[str, str]:
    """Create or update ``mailroom-<stage>`` with ``parameters`` through a change set; its outputs.

    The change set is printed first and refused (deleted unexecuted, ``DeployError`` with exit
    code 3) when it would replace or remove a stateful resource not named in ``allow_replace``.
    ``clients`` (``session.client``) counts what such a resource holds, for the refusal.
    """
    from botocore.exceptions import ClientError

    from infra import changeset
    from infra.stateful import parse_template

    name = f"mailroom-{stage}"
    given = {**(parameters or {}), "Stage": stage}
    try:
        previous = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
    except ClientError:
        previous = {}
    # Not given this time: the value the stack has (no NoEcho parameters in the template, so
    # describe_stacks shows each value as it is).
    kept = [
        {"ParameterKey": p["ParameterKey"], "ParameterValue": p["ParameterValue"]}
        for p in previous.get("Parameters", [])
        if p["ParameterKey"] not in given
    ]
    body = template.read_text()
    try:
        change_set = changeset.create(
            cloudformation,
            name,
            template_body=body,
            parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in given.items()] + kept,
        )
        if change_set and changeset.wait_until_created(cloudformation, change_set, name):
            changeset.review_and_execute(
                cloudformation,
                name,
                change_set,
                stage=stage,
                allow_replace=allow_replace,
                template=parse_template(body),
                clients=clients,
                out=out,
            )
        else:
            out(f"stack {name}: no changes")
    except changeset.ChangeSetError as err:
        raise DeployError(str(err), err.exit_code) from err
    except ClientError as err:
        raise DeployError(f"stack {name}: {err}") from err
    stack = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def write_environment(config_path: Path, stage: str, outputs: dict[str, str]) -> None:
    """Put the stack's outputs into the stage's environment variables (idempotent)."""
    config = json.loads(config_path.read_text())
    env = config["stages"].setdefault(stage, {}).setdefault("environment_variables", {})
    env["MAILROOM_STAGE"] = stage
    for output, variable in OUTPUT_VARIABLES.items():
        if output in outputs:
            env[variable] = outputs[output]
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def use_aws_region() -> None:
    """Let ``AWS_REGION`` alone name the region: boto3 and Chalice read only AWS_DEFAULT_REGION."""
    region = os.environ.get("AWS_REGION")
    if region and not os.environ.get("AWS_DEFAULT_REGION"):
        os.environ["AWS_DEFAULT_REGION"] = region


def reserved_concurrency(config: dict[str, Any], stage: str, function: str) -> int | None:
    """``function``'s reserved concurrency in ``stage`` (stage over top level, as Chalice)."""
    reserved = None
    for scope in (config, config.get("stages", {}).get(stage, {})):
        settings = scope.get("lambda_functions", {}).get(function, {})
        if "reserved_concurrency" in settings:
            reserved = settings["reserved_concurrency"]
    if reserved is not None and (not isinstance(reserved, int) or reserved < 0):
        raise DeployError(f"{function}: reserved_concurrency {reserved!r} in stage {stage}")
    return reserved


def maximum_concurrency(reserved: int | None) -> int:
    """The MaximumConcurrency for an SQS event source whose function reserves ``reserved``.

    The reservation where there is one: event source mappings do not account for it, so more
    pollers than reserved instances means throttled batches drifting toward the DLQ. AWS's
    least value is 2 (see ``concurrency_warning``). Without a reservation, a modest default.
    """
    if reserved is None:
        return DEFAULT_MAXIMUM_CONCURRENCY
    return max(MIN_CONCURRENCY, min(reserved, MAX_CONCURRENCY))


def concurrency_warning(function: str, reserved: int | None) -> str | None:
    """The one line to print when ``reserved`` cannot be honoured (below AWS's least, 2)."""
    if reserved is None or reserved >= MIN_CONCURRENCY:
        return None
    return (
        f"{function}: reserved concurrency {reserved} is below {MIN_CONCURRENCY}, the least "
        f"MaximumConcurrency an SQS event source takes; set to {MIN_CONCURRENCY}, so throttled "
        "batches can return to the queue with their receive count raised (reserve "
        f"{MIN_CONCURRENCY} or more to rule that out)"
    )


@dataclass(frozen=True)
class EventSource:
    """What ``configure_event_sources`` set on one mapping."""

    uuid: str
    function: str
    maximum_concurrency: int
    warning: str | None = None


def _reserved_in_aws(lambda_client: Any, function_arn: str) -> int | None:
    answer = lambda_client.get_function_concurrency(FunctionName=function_arn)
    value = answer.get("ReservedConcurrentExecutions")
    return int(value) if value is not None else None


def stopped_functions(lambda_client: Any, deployed: dict[str, Any]) -> set[str]:
    """Functions whose SQS event source is disabled now (``mailroom stop``), before a deploy."""
    from botocore.exceptions import ClientError

    stopped = set()
    for resource in deployed.get("resources", []):
        if resource.get("resource_type") != "sqs_event":
            continue
        try:
            state = lambda_client.get_event_source_mapping(UUID=resource["event_uuid"])["State"]
        except ClientError:
            continue  # gone: the deploy creates it anew
        if state in {"Disabled", "Disabling"}:
            stopped.add(str(resource.get("name", "")).removesuffix("-sqs-event-source"))
    return stopped


def configure_event_sources(
    lambda_client: Any,
    deployed: dict[str, Any],
    config: dict[str, Any],
    stage: str,
    stopped: set[str] | None = None,
) -> list[EventSource]:
    """Set and verify ReportBatchItemFailures and MaximumConcurrency on every SQS event source.

    Generic over every ``on_sqs_message`` handler Chalice deployed; the function is named by
    the resource (``<function>-sqs-event-source``). A lower reservation in AWS (set by hand,
    say) wins over the config file.
    """
    done = []
    for resource in deployed.get("resources", []):
        if resource.get("resource_type") != "sqs_event":
            continue
        uuid = resource["event_uuid"]
        function = str(resource.get("name", "")).removesuffix("-sqs-event-source")
        reserved = reserved_concurrency(config, stage, function)
        if resource.get("lambda_arn"):
            in_aws = _reserved_in_aws(lambda_client, resource["lambda_arn"])
            if in_aws is not None and (reserved is None or in_aws < reserved):
                reserved = in_aws
        wanted = maximum_concurrency(reserved)
        update: dict[str, Any] = {
            "UUID": uuid,
            "FunctionResponseTypes": [FLAG],
            "ScalingConfig": {"MaximumConcurrency": wanted},
        }
        if function in (stopped or set()):
            update["Enabled"] = False  # stopped by an operator: a deploy does not resume it
        lambda_client.update_event_source_mapping(**update)
        mapping = lambda_client.get_event_source_mapping(UUID=uuid)
        if FLAG not in mapping.get("FunctionResponseTypes", []):
            raise DeployError(f"event source mapping {uuid} did not keep {FLAG}")
        kept = (mapping.get("ScalingConfig") or {}).get("MaximumConcurrency")
        if kept != wanted:
            raise DeployError(
                f"event source mapping {uuid} has MaximumConcurrency {kept}, not {wanted}"
            )
        done.append(EventSource(uuid, function, wanted, concurrency_warning(function, reserved)))
    return done


def prune_cached_packages(deployments: Path) -> list[Path]:
    """Prune Chalice's cached packages in place; ``chalice deploy`` reuses them as they are."""
    from infra.prune import prune

    pruned = []
    for package in sorted(deployments.glob("*.zip")):
        smaller = package.with_suffix(".pruned")
        prune(package, smaller)
        if smaller.stat().st_size < package.stat().st_size:
            smaller.replace(package)
            pruned.append(package)
        else:
            smaller.unlink()
    return pruned


def _parameters(pairs: list[str]) -> dict[str, str]:
    found = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise DeployError(f"--parameter takes Key=Value, got {pair!r}", 2)
        found[key] = value
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.deploy")
    parser.add_argument("--stage", required=True)
    parser.add_argument("--skip-chalice", action="store_true", help="stack and ESM flag only")
    parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a template parameter (AlarmEmail, ProbeEnabled, ManageLogGroups, SesDomainPrimary…)",
    )
    parser.add_argument(
        "--allow-replace",
        action="append",
        default=[],
        metavar="LOGICAL_ID",
        help="let the change set replace or remove this stateful resource (repeatable)",
    )
    args = parser.parse_args(argv)
    try:
        import boto3

        use_aws_region()
        session = boto3.session.Session()
        check_credentials(session)
        parameters = _parameters(args.parameter)
        outputs = deploy_stack(
            session.client("cloudformation"),
            args.stage,
            parameters,
            allow_replace=args.allow_replace,
            clients=session.client,
        )
        write_environment(CONFIG, args.stage, outputs)
        print(f"stack mailroom-{args.stage}: {len(outputs)} outputs written to {CONFIG}")
        from infra.ses_feedback import wire_from_outputs

        wired = wire_from_outputs(session, outputs)
        if wired:
            print(wired)
        deployed_file = ROOT / ".chalice" / "deployed" / f"{args.stage}.json"
        lambda_client = session.client("lambda")
        stopped = (
            stopped_functions(lambda_client, json.loads(deployed_file.read_text()))
            if deployed_file.exists()
            else set()
        )
        if not args.skip_chalice:
            chalice = Path(sys.executable).with_name("chalice")
            cache = ROOT / ".chalice" / "deployments"
            if not list(cache.glob("*.zip")):
                with tempfile.TemporaryDirectory() as out:  # builds the cached package
                    subprocess.run(
                        [str(chalice), "package", "--stage", args.stage, out],
                        cwd=ROOT,
                        env={**os.environ, "MAILROOM_STAGE": args.stage},
                        check=True,
                    )
            for package in prune_cached_packages(cache):
                print(f"pruned {package.name}: {package.stat().st_size / 1e6:.1f} MB zipped")
            subprocess.run(
                [str(chalice), "deploy", "--stage", args.stage],
                cwd=ROOT,
                env={**os.environ, "MAILROOM_STAGE": args.stage},
                check=True,
            )
        if not deployed_file.exists():
            raise DeployError(f"{deployed_file} not found: run chalice deploy first")
        deployed = json.loads(deployed_file.read_text())
        config = json.loads(CONFIG.read_text())
        for source in configure_event_sources(lambda_client, deployed, config, args.stage, stopped):
            print(
                f"event source mapping {source.uuid} ({source.function}): {FLAG} on, "
                f"MaximumConcurrency {source.maximum_concurrency}"
            )
            if source.function in stopped:
                print(
                    f"{source.function} stays stopped (stopped before this deploy); "
                    f"`mailroom --stage {args.stage} resume` starts it"
                )
            if source.warning:
                print(f"warning: {source.warning}", file=sys.stderr)
    except DeployError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except subprocess.CalledProcessError as err:
        print(f"error: chalice deploy failed with exit code {err.returncode}", file=sys.stderr)
        return 1
    except Exception as err:
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
