"""Routing resolution (pure) and the route store contract (memory and DynamoDB alike)."""

from __future__ import annotations

from collections.abc import Callable

import boto3
import pytest

from chalicelib.mail.routing import (
    DynamoRouteStore,
    MemoryRouteStore,
    RouteAction,
    RouteRule,
    RouteStore,
    candidates,
    resolve,
)
from tests.conftest import REGION, Stage


def _rules(*rules: RouteRule) -> dict[str, RouteRule]:
    return {r.pattern: r for r in rules}


def test_candidates_go_from_exact_to_catch_all() -> None:
    assert candidates("Sales+EU@Example.com") == [
        "sales+eu@example.com",
        "sales@example.com",
        "*@example.com",
        "*",
    ]


def test_exact_address_beats_tagless_domain_and_catch_all() -> None:
    rules = _rules(
        RouteRule(pattern="*", action="drop"),
        RouteRule(pattern="*@example.com", action="bounce"),
        RouteRule(pattern="sales@example.com", action="gmail"),
        RouteRule(pattern="sales+eu@example.com", action="freescout", target="2"),
    )
    assert resolve("SALES+EU@example.com", rules).target == "2"  # type: ignore[union-attr]
    assert resolve("sales+us@example.com", rules).action is RouteAction.GMAIL  # type: ignore[union-attr]
    assert resolve("info@example.com", rules).action is RouteAction.BOUNCE  # type: ignore[union-attr]
    assert resolve("x@other.org", rules).action is RouteAction.DROP  # type: ignore[union-attr]


def test_disabled_rules_are_skipped_and_no_match_is_none() -> None:
    rules = _rules(
        RouteRule(pattern="sales@example.com", action="gmail", enabled=False),
        RouteRule(pattern="*@example.com", action="freescout", target="1"),
    )
    assert resolve("sales@example.com", rules).pattern == "*@example.com"  # type: ignore[union-attr]
    assert resolve("sales@other.org", rules) is None


def test_unknown_action_becomes_unknown_not_an_error() -> None:
    assert RouteRule(pattern="*", action="teleport").action is RouteAction.UNKNOWN


@pytest.fixture(params=["memory", "dynamodb"])
def store_factory(request: pytest.FixtureRequest) -> Callable[[], RouteStore]:
    if request.param == "memory":
        return MemoryRouteStore
    aws: Stage = request.getfixturevalue("aws")
    client = boto3.client("dynamodb", region_name=REGION)
    return lambda: DynamoRouteStore(aws.routes_table, cache_seconds=60, client=client)


def test_store_contract_put_then_resolve(store_factory: Callable[[], RouteStore]) -> None:
    store = store_factory()
    store.put_rule(RouteRule(pattern="*@example.com", action="freescout", target="7"))
    store.put_rule(RouteRule(pattern="vip@example.com", action="drop", enabled=False))

    rule = resolve("vip@example.com", store.rules())

    assert rule is not None
    assert (rule.action, rule.target) == (RouteAction.FREESCOUT, "7")


def test_dynamo_store_caches_rules_for_the_configured_time(aws: Stage) -> None:
    now = [0.0]
    client = boto3.client("dynamodb", region_name=REGION)
    store = DynamoRouteStore(
        aws.routes_table, cache_seconds=60, client=client, clock=lambda: now[0]
    )
    aws.put_route("*", "drop")
    assert "*" in store.rules()
    aws.put_route("*@example.com", "bounce")

    now[0] = 59.0
    cached = store.rules()
    now[0] = 60.0
    fresh = store.rules()

    assert "*@example.com" not in cached
    assert "*@example.com" in fresh
