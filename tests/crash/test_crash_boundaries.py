"""A crash at every side-effect boundary of every pipeline ends in exactly one effect or a
dead letter with its reason (the short run: the distinct crash points of one small message;
``bench/crash_boundaries.py`` crashes before and after every call)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import STAGE
from tests.crash.conftest import REPORTS
from tests.crash.harness import Pipeline, World, crash_everywhere, world
from tests.crash.pipelines import PIPELINES

# SES cannot be asked whether a bounce went out, so a bouncer that died between SendBounce
# and recording it sends a second one (handlers/bouncer.py chooses a duplicate over a loss).
UNPROVABLE = {"bouncer": "SES SendBounce has no idempotency key and no way to look a bounce up"}


@pytest.fixture(scope="module")
def stage() -> Iterator[World]:
    with world(STAGE) as running:
        yield running


@pytest.mark.parametrize(
    "pipeline",
    [
        pytest.param(
            p,
            id=p.name.replace(" ", "-"),
            marks=[pytest.mark.xfail(reason=UNPROVABLE[p.name], strict=True)]
            if p.name in UNPROVABLE
            else [],
        )
        for p in PIPELINES
    ],
)
def test_a_crash_at_any_boundary_ends_in_one_effect_or_a_reasoned_dead_letter(
    stage: World, pipeline: Pipeline
) -> None:
    report = crash_everywhere(stage, pipeline, every=False)
    REPORTS.append(report)

    assert report.calls, "no outbound call found: the boundaries are not wrapped"
    assert report.crashes == len(report.calls) + 1
    assert [str(v) for v in report.failures] == []
