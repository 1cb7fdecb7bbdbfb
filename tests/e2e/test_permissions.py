"""Every AWS call each function (and the operator CLI) made during the end-to-end suite is
allowed by the IAM policy it is deployed with; runs last (``conftest`` orders it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra import policies
from mailroom_local import iam
from mailroom_local.iam_calls import Target, allowed

# In the end-to-end group: under pytest-xdist it runs in the worker whose stack the flows used.
pytestmark = pytest.mark.e2e

# The suite's modules that drive the flows; alone, this file has nothing to judge.
FLOW_MODULES = {
    "test_local_stack",
    "test_outbound_stack",
    "test_ses_stack",
    "test_probe_local",
    "test_cli_redrive",
    "test_cli_commands",
    "test_postmark_routes",
    "test_ses_failover",
    "test_gmail_label_stack",
}


def _calls(stack: dict[str, Any]) -> list[dict[str, Any]]:
    return iam.read_calls(Path(stack["calls_file"]))


def test_every_recorded_call_is_allowed_by_the_callers_policy(stack: dict[str, Any]) -> None:
    refused = sorted(
        f"{call['function']}: {call['action']} on {call['resource']}"
        + (f" with {call['context']}" if call["context"] else "")
        for call in _calls(stack)
        if not allowed(
            iam.policy_of("local", call["function"]),
            Target(call["action"], call["resource"], tuple(call["context"].items())),
        )
    )
    assert not refused, "calls the caller's policy does not allow:\n" + "\n".join(refused)


def test_every_function_and_the_operator_were_exercised(
    stack: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    ran = {item.module.__name__.rsplit(".", 1)[-1] for item in request.session.items}
    if not ran >= FLOW_MODULES:
        pytest.skip("judges the whole end-to-end suite's calls; run tests/e2e")
    callers = {call["function"] for call in _calls(stack)}
    assert set(policies.FUNCTIONS) | {iam.OPERATOR} <= callers, callers
