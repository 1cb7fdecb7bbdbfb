"""The generated IAM policies grant what the exactly-once and no-loss rules depend on."""

from __future__ import annotations

import pytest

from infra import policies

CONSUMERS = [f for f in policies.FUNCTIONS if f not in {"api_handler", "probe"}]


@pytest.mark.parametrize("function", CONSUMERS)
def test_queue_consumers_may_list_the_payload_prefix_so_a_missing_payload_is_a_404(
    function: str,
) -> None:
    statements = policies.policy("prod", function)["Statement"]
    [listing] = [
        s
        for s in statements
        if s["Action"] == ["s3:ListBucket"] and "payloads/*" in str(s.get("Condition"))
    ]
    assert listing["Resource"] == "arn:aws:s3:::mailroom-prod-mail-*"
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["payloads/*"]}}


@pytest.mark.parametrize("function", CONSUMERS)
def test_queue_consumers_may_count_attempts_and_record_in_the_state_table(function: str) -> None:
    statements = policies.policy("prod", function)["Statement"]
    state = [
        s for s in statements if s["Resource"] == "arn:aws:dynamodb:*:*:table/mailroom-prod-state"
    ]
    actions = {a for s in state for a in s["Action"]}
    # UpdateItem counts attempts and claims keys; PutItem/DeleteItem back the transaction
    # (TransactWriteItems is authorised per item action) and releases.
    assert {"dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:DeleteItem"} <= actions
