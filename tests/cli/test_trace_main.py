"""``mailroom trace``, the group's exit codes and errors, and the console-script entry point."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import boto3
from click.testing import CliRunner

from chalicelib.mail.delivery_log import DeliveryLog, DeliveryStatus
from chalicelib.platform.logging import hash_id
from mailroom_cli.main import cli
from tests.cli.conftest import Invoke, dead_letter
from tests.conftest import REGION, Stage

ROOT = Path(__file__).resolve().parents[2]


def test_trace_answers_the_three_questions_for_an_outbound_email(
    aws: Stage, mailroom: Invoke
) -> None:
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    dynamodb.put_item(
        TableName=aws.state_table,
        Item={
            "PK": {"S": "IDEMPOTENCY#outbound:c-9"},
            "SK": {"S": "v1"},
            "status": {"S": "COMPLETED"},
            "result": {"M": {"postmark_message_id": {"S": "pm-out-1"}}},
        },
    )
    log = DeliveryLog(aws.state_table, client=dynamodb)
    log.record("c-9", DeliveryStatus.QUEUED, at=datetime(2026, 11, 22, 10, tzinfo=UTC))
    log.record("c-9", DeliveryStatus.SENT, at=datetime(2026, 11, 22, 10, 1, tzinfo=UTC))
    log.record(
        "c-9",
        DeliveryStatus.BOUNCED,
        at=datetime(2026, 11, 22, 10, 2, tzinfo=UTC),
        details={"reason": "smtp; 550 5.1.1 user unknown"},
    )

    result = mailroom("trace", "c-9", json_output=True)

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["message_id_hash"] == hash_id("c-9")
    assert report["answers"] == {
        "did we accept it": "yes",
        "did the provider accept it": "postmark_message_id=pm-out-1",
        "what did the recipient's server say": (
            "bounced at 2026-11-22T10:02:00.000000+00:00 smtp; 550 5.1.1 user unknown"
        ),
    }
    assert [e["status"] for e in report["delivery_log"]] == ["queued", "sent", "bounced"]


def test_trace_finds_a_dead_letter_with_its_reason(aws: Stage, mailroom: Invoke) -> None:
    dead_letter(aws, payload={"MessageID": "pm-7"}, reason="freescout answered 503")

    result = mailroom("trace", "pm-7")

    assert result.exit_code == 0, result.output
    assert "did we accept it? yes (dead-lettered: freescout answered 503)" in result.output
    assert "DLQ inbound: ProviderTransientError: freescout answered 503" in result.output


def test_trace_finds_the_audit_record_of_a_discarded_email(aws: Stage, mailroom: Invoke) -> None:
    dead_letter(aws, payload={"MessageID": "pm-8"})
    mailroom("dlq", "discard", "--id", "pm-8", "--reason", "duplicate of pm-6")

    result = mailroom("trace", "pm-8", json_output=True)

    assert result.exit_code == 0, result.output
    [record] = json.loads(result.stdout)["audit"]
    assert (record["action"], record["reason"]) == ("dlq.discard", "duplicate of pm-6")


def test_trace_of_an_unknown_id_is_a_finding(aws: Stage, mailroom: Invoke) -> None:
    result = mailroom("trace", "nothing-here")

    assert result.exit_code == 1
    assert "nothing known about 'nothing-here'" in result.output


def test_no_stage_is_a_one_line_usage_error(monkeypatch: object) -> None:
    result = CliRunner(env={"MAILROOM_STAGE": ""}).invoke(cli, ["routes", "list"])

    assert result.exit_code == 2
    assert result.output.strip() == (
        "Error: say which stage: --stage <stage> (or MAILROOM_STAGE), or --local"
    )


def test_local_without_a_running_stack_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--local", "--state-dir", str(tmp_path), "dlq", "status"])

    assert result.exit_code == 2
    assert "is the local stack running" in result.output


def test_aws_refusal_is_one_line_with_exit_code_2(aws: Stage, mailroom: Invoke) -> None:
    boto3.client("dynamodb", region_name=REGION).delete_table(TableName=aws.routes_table)

    result = mailroom("routes", "list")

    assert result.exit_code == 2
    assert result.output.startswith("Error: AWS refused Scan: ResourceNotFoundException")
    assert "Traceback" not in result.output


def test_help_needs_no_stage() -> None:
    result = CliRunner(env={"MAILROOM_STAGE": ""}).invoke(cli, ["dlq", "redrive", "--help"])

    assert result.exit_code == 0
    assert "--reason-contains" in result.output


def test_console_script_resolves_to_the_click_entry_point() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["mailroom"].partition(":")

    entry = getattr(importlib.import_module(module), function)

    assert callable(entry)
    assert entry.__module__ == "mailroom_cli.main"


def test_runs_as_python_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mailroom_cli", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "Usage: mailroom" in result.stdout


def test_trace_reads_the_local_stacks_log_lines_by_message_id_hash(tmp_path: Path) -> None:
    from datetime import timedelta

    from mailroom_cli.context import Context, Target
    from mailroom_cli.trace import log_lines

    log = tmp_path / "stack.log"
    ours = {"event_type": "inbound_bridge", "message_id_hash": hash_id("pm-1"), "outcome": "retry"}
    other = {"event_type": "inbound_bridge", "message_id_hash": hash_id("pm-2")}
    outbound = {"event_type": "outbound_sender", "correlation_id": "pm-1", "outcome": "sent"}
    log.write_text(
        "\n".join([json.dumps(ours), "not json", json.dumps(other), json.dumps(outbound)])
    )
    ctx = Context(lambda: Target(stage="local", region=REGION, local=True, log_file=log))

    assert log_lines(ctx, "pm-1", timedelta(hours=1)) == [ours, outbound]


def test_version_answers_without_an_install() -> None:
    result = CliRunner().invoke(cli, ["--version"])

    assert result.exit_code == 0
    assert result.output.startswith("mailroom ")
