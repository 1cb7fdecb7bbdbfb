"""Stack updates through a change set that is shown first and refused if it endangers state.

``make deploy`` creates, reviews and executes one (``infra.deploy``). For the
CloudFormation-only path, ``python -m infra.changeset --stack-name mailroom-<stage>
--change-set-name <name or ARN> [--allow-replace LogicalId]…`` reviews and executes a change
set made by ``aws cloudformation deploy --no-execute-changeset``. The decisions are in
``infra/stateful.py``; this module only talks to AWS.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from infra.stateful import (
    STATEFUL,
    Change,
    changes_from,
    parse_template,
    refusal,
    review,
    table,
    with_template_policies,
)

# describe_change_set's StatusReason when the template and parameters change nothing.
NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
POLL_SECONDS = 5
CREATE_TIMEOUT_SECONDS = 600
REFUSED_EXIT_CODE = 3


class ChangeSetError(Exception):
    """The change set could not be made, reviewed or executed; the message says why."""

    exit_code = 1


class Refused(ChangeSetError):
    """The change set replaces or removes state nobody allowed; it was deleted unexecuted."""

    exit_code = REFUSED_EXIT_CODE


def create(
    cloudformation: Any,
    stack: str,
    *,
    template_body: str,
    parameters: list[dict[str, str]],
    capabilities: Iterable[str] = ("CAPABILITY_IAM",),
) -> str | None:
    """A new change set for ``stack`` (CREATE when it has no resources yet); its id.

    None when CloudFormation says at once that nothing would change.
    """
    from botocore.exceptions import ClientError

    status = stack_status(cloudformation, stack)
    # A stack left in REVIEW_IN_PROGRESS by an unexecuted CREATE change set has no resources.
    kind = "UPDATE" if status not in {None, "REVIEW_IN_PROGRESS"} else "CREATE"
    try:
        answer = cloudformation.create_change_set(
            StackName=stack,
            ChangeSetName=f"{stack}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}",
            ChangeSetType=kind,
            TemplateBody=template_body,
            Parameters=parameters,
            Capabilities=list(capabilities),
        )
    except ClientError as err:
        if any(text in str(err) for text in NO_CHANGES):
            return None
        raise
    return str(answer["Id"])


def stack_status(cloudformation: Any, stack: str) -> str | None:
    from botocore.exceptions import ClientError

    try:
        return str(cloudformation.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"])
    except ClientError as err:
        if "does not exist" in str(err):
            return None
        raise


def wait_until_created(
    cloudformation: Any,
    change_set: str,
    stack: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """True once the change set is ready; False (and deleted) when it would change nothing."""
    waited = 0.0
    while True:
        answer = cloudformation.describe_change_set(ChangeSetName=change_set, StackName=stack)
        status = answer["Status"]
        if status == "CREATE_COMPLETE":
            return True
        if status == "FAILED":
            reason = answer.get("StatusReason", "")
            if any(text in reason for text in NO_CHANGES):
                cloudformation.delete_change_set(ChangeSetName=change_set, StackName=stack)
                return False
            raise ChangeSetError(f"change set for {stack} failed: {reason}")
        if waited >= CREATE_TIMEOUT_SECONDS:
            raise ChangeSetError(f"change set for {stack} still {status} after {waited:.0f} s")
        sleep(POLL_SECONDS)
        waited += POLL_SECONDS


def describe(cloudformation: Any, change_set: str, stack: str) -> list[Change]:
    """Every resource change, over all pages, with physical ids where AWS leaves them out."""
    pages, token = [], None
    while True:
        more: dict[str, str] = {"NextToken": token} if token else {}
        answer = cloudformation.describe_change_set(
            ChangeSetName=change_set, StackName=stack, **more
        )
        pages.append(answer)
        token = answer.get("NextToken")
        if not token:
            break
    changes = changes_from(pages)
    known = _physical_ids(cloudformation, stack)
    return [
        c if c.physical_id or c.logical_id not in known else _with_physical(c, known)
        for c in changes
    ]


def _with_physical(change: Change, known: dict[str, str]) -> Change:
    return replace(change, physical_id=known[change.logical_id])


def _physical_ids(cloudformation: Any, stack: str) -> dict[str, str]:
    from botocore.exceptions import ClientError

    try:
        pages = cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack)
        return {
            r["LogicalResourceId"]: r["PhysicalResourceId"]
            for page in pages
            for r in page["StackResourceSummaries"]
            if r.get("PhysicalResourceId")
        }
    except ClientError:
        return {}


def stack_template(
    cloudformation: Any, stack: str, change_set: str | None = None
) -> dict[str, Any]:
    """The template the stack runs now, or the one ``change_set`` holds; empty if none."""
    from botocore.exceptions import ClientError

    which = {"ChangeSetName": change_set} if change_set else {}
    try:
        body = cloudformation.get_template(StackName=stack, TemplateStage="Original", **which)
    except ClientError:
        return {}
    return parse_template(body.get("TemplateBody") or {})


def holdings(clients: Callable[[str], Any], changes: Iterable[Change]) -> dict[str, str]:
    """What each endangered resource holds now, as far as AWS says cheaply; best effort."""
    found = {}
    for change in changes:
        if not change.physical_id:
            continue
        try:
            text = _holding(clients, change.resource_type, change.physical_id)
        except Exception as err:  # a count is advice: never let it hide the refusal
            text = f"could not be counted ({type(err).__name__})"
        if text:
            found[change.logical_id] = text
    return found


def _holding(clients: Callable[[str], Any], kind: str, physical_id: str) -> str | None:
    if kind == "AWS::SQS::Queue":
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        names.append("ApproximateNumberOfMessagesDelayed")
        attributes = clients("sqs").get_queue_attributes(QueueUrl=physical_id, AttributeNames=names)
        count = sum(int(attributes["Attributes"].get(name, 0)) for name in names)
        return f"holds about {count} message{'s' if count != 1 else ''}"
    if kind == "AWS::DynamoDB::Table":
        table_ = clients("dynamodb").describe_table(TableName=physical_id)["Table"]
        count = int(table_.get("ItemCount", 0))
        return f"holds about {count} items (DynamoDB refreshes the count every six hours)"
    if kind == "AWS::S3::Bucket":
        listed = clients("s3").list_object_versions(Bucket=physical_id, MaxKeys=1000)
        count = len(listed.get("Versions", [])) + len(listed.get("DeleteMarkers", []))
        more = "+" if listed.get("IsTruncated") else ""
        return f"holds {count}{more} object versions"
    if kind == "AWS::Logs::LogGroup":
        groups = clients("logs").describe_log_groups(logGroupNamePrefix=physical_id)["logGroups"]
        [group] = [g for g in groups if g["logGroupName"] == physical_id] or [None]
        return f"holds {group.get('storedBytes', 0)} bytes of log events" if group else None
    return None


def review_and_execute(
    cloudformation: Any,
    stack: str,
    change_set: str,
    *,
    stage: str,
    allow_replace: Iterable[str] = (),
    template: dict[str, Any] | None = None,
    clients: Callable[[str], Any] | None = None,
    out: Callable[[str], None] = print,
) -> None:
    """Print the change set, then execute it, or delete it and raise ``Refused``.

    ``template`` is the one the change set was made from (read from AWS when not given): its
    retain policies stand in where AWS reports no ``PolicyAction``. ``clients`` counts what
    the endangered resources hold.
    """
    changes = describe(cloudformation, change_set, stack)
    if template is None:
        template = stack_template(cloudformation, stack, change_set)
    changes = with_template_policies(changes, template, stack_template(cloudformation, stack))
    out(f"change set {_name(change_set)} for stack {stack}:")
    out(table(changes) if changes else "(no resource changes: parameters or outputs only)")
    result = review(changes, allow_replace)
    if not result.may_execute:
        held = holdings(clients, result.refused) if clients else {}
        cloudformation.delete_change_set(ChangeSetName=change_set, StackName=stack)
        raise Refused(refusal(result, stage, held))
    for change in result.allowed:
        holding = STATEFUL[change.resource_type]
        out(f"allowed by --allow-replace: {change.logical_id} and {holding.holds}")
    creating = stack_status(cloudformation, stack) == "REVIEW_IN_PROGRESS"
    cloudformation.execute_change_set(ChangeSetName=change_set, StackName=stack)
    waiter = "stack_create_complete" if creating else "stack_update_complete"
    _wait(cloudformation, waiter, stack)


def _name(change_set: str) -> str:
    """The name inside a change set ARN (``…:changeSet/<name>/<uuid>``), or the name given."""
    if change_set.startswith("arn:") and change_set.count("/") >= 2:
        return change_set.split("/")[-2]
    return change_set


def _wait(cloudformation: Any, waiter: str, stack: str) -> None:
    from botocore.exceptions import WaiterError

    try:
        cloudformation.get_waiter(waiter).wait(StackName=stack)
    except WaiterError as err:
        raise ChangeSetError(f"stack {stack}: {err}") from err


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.changeset")
    parser.add_argument("--stack-name", required=True)
    parser.add_argument("--change-set-name", required=True, help="name or ARN")
    parser.add_argument(
        "--allow-replace",
        action="append",
        default=[],
        metavar="LOGICAL_ID",
        help="let this stateful resource be replaced or removed (repeatable)",
    )
    args = parser.parse_args(argv)
    import boto3

    from infra.deploy import DeployError, check_credentials, use_aws_region

    try:
        use_aws_region()
        session = boto3.session.Session()
        check_credentials(session)
        cloudformation = session.client("cloudformation")
        stage = args.stack_name.removeprefix("mailroom-")
        review_and_execute(
            cloudformation,
            args.stack_name,
            args.change_set_name,
            stage=stage,
            allow_replace=args.allow_replace,
            clients=session.client,
        )
    except (ChangeSetError, DeployError) as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except Exception as err:
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print(f"stack {args.stack_name}: change set executed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
