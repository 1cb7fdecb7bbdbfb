"""``mailroom routes`` and ``mailroom suppression`` against moto."""

from __future__ import annotations

import json

import boto3

from chalicelib.platform.logging import hash_id
from tests.cli.conftest import Invoke
from tests.conftest import REGION, STAGE, Stage


def test_added_route_is_listed_and_wins_for_its_address(aws: Stage, mailroom: Invoke) -> None:
    added = mailroom("routes", "add", "*@example.com", "--action", "freescout", "--target", "3")

    assert added.exit_code == 0, added.output
    assert "containers pick this up within 60 s (routes cache)" in added.output
    [rule] = json.loads(mailroom("routes", "list", json_output=True).stdout)
    assert (rule["pattern"], rule["action"], rule["target"], rule["problem"]) == (
        "*@example.com",
        "freescout",
        "3",
        None,
    )
    tested = json.loads(mailroom("routes", "test", "Ann+x@Example.com", json_output=True).stdout)
    assert [c["candidate"] for c in tested["candidates"]] == [
        "ann+x@example.com",
        "ann@example.com",
        "*@example.com",
        "*",
    ]
    assert [c["rule"] for c in tested["candidates"]] == ["no rule", "no rule", "WINNER", "no rule"]


def test_disabled_route_passes_to_the_next_candidate(aws: Stage, mailroom: Invoke) -> None:
    mailroom("routes", "add", "ann@example.com", "--action", "drop")
    mailroom("routes", "add", "*", "--action", "freescout", "--target", "1")

    mailroom("routes", "disable", "ann@example.com")
    result = mailroom("routes", "test", "ann@example.com")

    assert "winner: * → freescout 1" in result.output
    assert "disabled" in result.output


def test_route_with_an_unusable_target_is_refused(aws: Stage, mailroom: Invoke) -> None:
    freescout = mailroom("routes", "add", "*", "--action", "freescout", "--target", "help")
    gmail = mailroom("routes", "add", "*", "--action", "gmail", "--target", "box@example.com")

    assert freescout.exit_code == 2
    assert "mailbox id" in freescout.output
    assert gmail.exit_code == 2
    parameter = f"/mailroom/{STAGE}/gmail/box_at_example.com"
    assert f"no Gmail authorization in SSM ({parameter})" in gmail.output
    assert json.loads(mailroom("routes", "list", json_output=True).stdout) == []


def test_list_flags_a_stored_rule_whose_target_is_not_usable(aws: Stage, mailroom: Invoke) -> None:
    aws.put_route("*", "gmail", "box@example.com")

    [rule] = json.loads(mailroom("routes", "list", json_output=True).stdout)

    assert rule["problem"].startswith("no Gmail authorization in SSM")


def test_set_and_remove_are_audited_without_the_raw_address(aws: Stage, mailroom: Invoke) -> None:
    mailroom("routes", "add", "ann@example.com", "--action", "freescout", "--target", "1")

    changed = mailroom("routes", "set", "ann@example.com", "--target", "2", json_output=True)
    removed = mailroom("routes", "remove", "ann@example.com", "--reason", "left the company")

    assert json.loads(changed.stdout)["target"] == "2"
    assert removed.exit_code == 0, removed.output
    assert json.loads(mailroom("routes", "list", json_output=True).stdout) == []
    records = json.loads(mailroom("audit", "list", json_output=True).stdout)
    assert [r["action"] for r in records] == ["route.remove", "route.set", "route.add"]
    assert {r["details"]["pattern"] for r in records} == {f"{hash_id('ann')}@example.com"}


def test_test_without_a_matching_rule_is_a_finding(aws: Stage, mailroom: Invoke) -> None:
    result = mailroom("routes", "test", "x@nowhere.org")

    assert result.exit_code == 1
    assert "no enabled rule matches" in result.output


def test_suppression_add_check_remove(aws: Stage, mailroom: Invoke) -> None:
    added = mailroom("suppression", "add", "Ann <ann@Example.com>", "--reason", "asked to stop")

    assert added.exit_code == 0, added.output
    assert mailroom("suppression", "check", "ann@example.com").exit_code == 1
    [row] = json.loads(mailroom("suppression", "list", json_output=True).stdout)
    assert (row["address"], row["reason"], row["source"]) == (
        "ann@example.com",
        "asked to stop",
        "operator",
    )

    removed = mailroom("suppression", "remove", "ann@example.com", "--reason", "asked again")

    assert removed.exit_code == 0, removed.output
    assert mailroom("suppression", "check", "ann@example.com").exit_code == 0
    records = json.loads(mailroom("audit", "list", json_output=True).stdout)
    assert [r["details"]["address_hash"] for r in records] == [hash_id("ann@example.com")] * 2
    assert "ann@example.com" not in json.dumps(records)


def test_suppression_remove_needs_a_reason(aws: Stage, mailroom: Invoke) -> None:
    result = mailroom("suppression", "remove", "ann@example.com")

    assert result.exit_code == 2
    assert (
        boto3.client("dynamodb", region_name=REGION).scan(TableName=aws.state_table)["Count"] == 0
    )
