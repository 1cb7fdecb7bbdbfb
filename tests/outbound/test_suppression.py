"""The suppression list against moto's DynamoDB."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3

from chalicelib.mail.suppression import SuppressionList
from tests.conftest import REGION, Stage


def _list(aws: Stage) -> SuppressionList:
    return SuppressionList(aws.state_table, client=boto3.client("dynamodb", region_name=REGION))


def test_added_address_is_filtered_whatever_its_case_or_display_name(aws: Stage) -> None:
    suppression = _list(aws)
    suppression.add("Gone@Example.org", reason="HardBounce", source="postmark")

    keep, drop = suppression.filter(["Ann <gone@example.ORG>", " <GONE@example.org> ", "ok@x.org"])

    assert keep == ["ok@x.org"]
    assert drop == ["Ann <gone@example.ORG>", " <GONE@example.org> "]


def test_removed_address_is_sendable_again(aws: Stage) -> None:
    suppression = _list(aws)
    suppression.add("gone@example.org", reason="SpamComplaint", source="postmark")
    suppression.remove("GONE@example.org")

    assert suppression.suppressed(["gone@example.org"]) == set()


def test_list_shows_reason_source_and_time_and_spans_many_addresses(aws: Stage) -> None:
    suppression = _list(aws)
    at = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    for i in range(120):
        suppression.add(f"u{i:03d}@example.org", reason="HardBounce", source="postmark", at=at)

    listed = suppression.list()
    checked = suppression.suppressed([f"u{i:03d}@example.org" for i in range(130)])

    assert len(listed) == 120
    assert listed[0].address == "u000@example.org"
    assert (listed[0].reason, listed[0].source) == ("HardBounce", "postmark")
    assert listed[0].suppressed_at == "2026-11-22T12:00:00.000000+00:00"
    assert len(checked) == 120


def test_an_older_change_does_not_undo_a_newer_one(aws: Stage) -> None:
    suppression = _list(aws)
    bounced = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    reactivated = datetime(2026, 11, 22, 11, 0, tzinfo=UTC)

    assert suppression.remove("ann@example.org", source="postmark", at=reactivated)
    late_bounce = suppression.add("ann@example.org", reason="HardBounce", source="x", at=bounced)
    assert not late_bounce
    assert suppression.suppressed(["ann@example.org"]) == set()
    assert suppression.list() == []

    assert suppression.add("ann@example.org", reason="SpamComplaint", source="postmark")
    assert suppression.suppressed(["ann@example.org"]) == {"ann@example.org"}


def test_an_older_bounce_in_the_same_second_does_not_undo_a_newer_reactivation(
    aws: Stage,
) -> None:
    suppression = _list(aws)
    bounced = datetime(2026, 11, 22, 10, 0, 0, 100_000, tzinfo=UTC)
    reactivated = datetime(2026, 11, 22, 10, 0, 0, 900_000, tzinfo=UTC)

    assert suppression.remove("ann@example.org", source="postmark", at=reactivated)
    assert not suppression.add("ann@example.org", reason="HardBounce", source="x", at=bounced)

    assert suppression.suppressed(["ann@example.org"]) == set()


def test_a_newer_bounce_in_the_same_second_suppresses(aws: Stage) -> None:
    suppression = _list(aws)
    reactivated = datetime(2026, 11, 22, 10, 0, 0, 100_000, tzinfo=UTC)
    bounced = datetime(2026, 11, 22, 10, 0, 0, 900_000, tzinfo=UTC)

    assert suppression.remove("ann@example.org", source="postmark", at=reactivated)
    assert suppression.add("ann@example.org", reason="HardBounce", source="x", at=bounced)

    assert suppression.suppressed(["ann@example.org"]) == {"ann@example.org"}


def test_at_equal_times_suppression_wins_whatever_the_arrival_order(aws: Stage) -> None:
    suppression = _list(aws)
    at = datetime(2026, 11, 22, 10, 0, 0, 500_000, tzinfo=UTC)

    suppression.remove("first@example.org", source="postmark", at=at)
    suppression.add("first@example.org", reason="HardBounce", source="postmark", at=at)
    suppression.add("second@example.org", reason="HardBounce", source="postmark", at=at)
    suppression.remove("second@example.org", source="postmark", at=at)

    checked = suppression.suppressed(["first@example.org", "second@example.org"])
    assert checked == {"first@example.org", "second@example.org"}


def test_a_change_recorded_at_whole_seconds_counts_as_the_start_of_that_second(
    aws: Stage,
) -> None:
    client = boto3.client("dynamodb", region_name=REGION)
    client.put_item(  # as written before changes were kept to the microsecond
        TableName=aws.state_table,
        Item={
            "PK": {"S": "SUPPRESSION#ann@example.org"},
            "SK": {"S": "v1"},
            "state": {"S": "suppressed"},
            "reason": {"S": "HardBounce"},
            "source": {"S": "postmark"},
            "changed_at": {"S": "2026-11-22T10:00:00+00:00"},
        },
    )
    later = datetime(2026, 11, 22, 10, 0, 0, 1, tzinfo=UTC)

    assert _list(aws).remove("ann@example.org", source="postmark", at=later)
