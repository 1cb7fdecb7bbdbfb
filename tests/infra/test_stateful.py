"""The change-set verdict over recorded describe_change_set answers: what is refused and why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from infra import deploy
from infra.stateful import (
    Change,
    changes_from,
    parse_template,
    refusal,
    review,
    table,
    with_template_policies,
)

EVENTS = Path(__file__).resolve().parents[1] / "events"


def _recorded() -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(
        (EVENTS / "cloudformation_change_set_replaces_state.json").read_text()
    )
    return answer


def test_a_replaced_queue_a_conditionally_replaced_table_and_a_removed_log_group_are_refused() -> (
    None
):
    result = review(changes_from([_recorded()]))

    assert {c.logical_id for c in result.refused} == {
        "InboundBridgeQueue",
        "StateTable",
        "ProbeLogGroup",
    }
    assert not result.may_execute


def test_stateless_replacements_in_place_modifications_and_additions_go_through() -> None:
    changes = {c.logical_id: c for c in changes_from([_recorded()])}

    assert not changes["ApiErrorsAlarm"].endangers_state  # replaced, but holds nothing
    assert not changes["InboundBridgeDeadLetterQueue"].endangers_state  # Replacement False
    assert not changes["SesFeedbackQueue"].endangers_state  # added


def test_naming_every_endangered_resource_lets_the_change_set_run() -> None:
    changes = changes_from([_recorded()])

    partly = review(changes, ["InboundBridgeQueue"])
    fully = review(changes, ["InboundBridgeQueue", "StateTable", "ProbeLogGroup"])

    assert [c.logical_id for c in partly.refused] == ["StateTable", "ProbeLogGroup"]
    assert fully.may_execute
    assert {c.logical_id for c in fully.allowed} == {
        "InboundBridgeQueue",
        "StateTable",
        "ProbeLogGroup",
    }


def test_an_allowance_that_names_nothing_at_risk_is_refused_as_a_likely_typo() -> None:
    changes = changes_from([_recorded()])

    result = review(changes, ["InboundBridgeQueue", "StateTable", "ProbeLogGroup", "StateTabel"])

    assert not result.may_execute
    assert result.unknown_allowances == ("StateTabel",)
    assert "--allow-replace StateTabel names no stateful resource" in refusal(result, "dev")


def test_a_stateful_modify_without_replacement_information_counts_as_a_replacement() -> None:
    # moto's change sets, and any answer that leaves Replacement out, say nothing either way.
    queue = Change("Modify", "BouncerQueue", "AWS::SQS::Queue")
    alarm = Change("Modify", "BouncerErrorsAlarm", "AWS::CloudWatch::Alarm")

    result = review([queue, alarm])

    assert result.refused == (queue,)
    assert "possibly replaced (the change set does not say)" in refusal(result, "dev")


def test_the_refusal_says_what_is_at_stake_what_it_holds_now_and_how_to_keep_it() -> None:
    result = review(changes_from([_recorded()]))

    text = refusal(result, "prod", {"InboundBridgeQueue": "holds about 3 messages"})

    lines = text.splitlines()
    assert lines[0] == (
        "refused: this change set would replace or remove 3 stateful resources; "
        "nothing was executed"
    )
    assert (
        "- InboundBridgeQueue (AWS::SQS::Queue https://sqs.us-east-1.amazonaws.com/123456789012/"
        "mailroom-dev-inbound-bridge.fifo): replaced, because QueueName (Always) changes; the "
        "old one is kept (retain policy) but detached" in text
    )
    assert "now: holds about 3 messages" in text
    assert "`mailroom --stage prod dlq redrive`" in text  # drain and redrive
    assert "possibly replaced (Replacement: Conditional), because KeySchema" in text
    assert "export-table-to-point-in-time" in text  # export and import
    assert (
        "- ProbeLogGroup (AWS::Logs::LogGroup /aws/lambda/mailroom-dev-probe): removed from the "
        "stack; it is kept (retain policy) but leaves the stack" in text
    )
    assert lines[-1] == (
        "to go ahead once it is safe: --allow-replace InboundBridgeQueue "
        "--allow-replace StateTable --allow-replace ProbeLogGroup"
    )


def test_without_a_retain_policy_the_refusal_says_the_resource_is_deleted() -> None:
    queue = Change("Remove", "BouncerQueue", "AWS::SQS::Queue", policy_action="Delete")

    text = refusal(review([queue]), "dev")

    assert "CloudFormation deletes it with everything it holds" in text


def test_the_table_lists_each_change_with_its_replacement_and_what_is_at_risk() -> None:
    rows = {line.split()[1]: line for line in table(changes_from([_recorded()])).splitlines()[1:]}

    assert rows["InboundBridgeQueue"].split()[0] == "Modify"
    assert "True (QueueName (Always))" in rows["InboundBridgeQueue"]
    assert rows["InboundBridgeQueue"].endswith("AT RISK")
    assert "Conditional (KeySchema (Conditionally))" in rows["StateTable"]
    assert rows["InboundBridgeDeadLetterQueue"].endswith("kept")
    assert rows["SesFeedbackQueue"].endswith("new")
    assert rows["ApiErrorsAlarm"].endswith("-")
    assert rows["ProbeLogGroup"].split()[0] == "Remove"
    assert rows["SesFeedbackQueue"].split()[:3] == ["Add", "SesFeedbackQueue", "AWS::SQS::Queue"]
    assert [line.split()[0] for line in rows.values()] == ["Add", *["Modify"] * 4, "Remove"]


def test_retain_policies_come_from_the_templates_when_aws_reports_no_policy_action() -> None:
    template = parse_template(deploy.TEMPLATE.read_text())
    old = {"Resources": {"Gone": {"Type": "AWS::SQS::Queue", "DeletionPolicy": "Retain"}}}
    changes = [
        Change("Modify", "InboundBridgeQueue", "AWS::SQS::Queue"),
        Change("Remove", "Gone", "AWS::SQS::Queue"),
        Change("Remove", "Unprotected", "AWS::SQS::Queue"),
    ]

    filled = {c.logical_id: c for c in with_template_policies(changes, template, old)}

    assert filled["InboundBridgeQueue"].policy_action == "ReplaceAndRetain"
    assert filled["Gone"].policy_action == "Retain"
    assert filled["Unprotected"].policy_action == "Delete"
    assert filled["Gone"].retained
    assert not filled["Unprotected"].retained
