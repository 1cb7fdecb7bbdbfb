"""A crash at every side-effect boundary of every pipeline ends in exactly one effect or a
dead letter with its reason (the short run: the distinct crash points of one small message;
``bench/crash_boundaries.py`` crashes before and after every call)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chalicelib.handlers.http import HttpReply
from tests.conftest import STAGE
from tests.crash.conftest import REPORTS
from tests.crash.harness import HttpEntry, Pipeline, World, crash_everywhere, crash_run, world
from tests.crash.pipelines import PIPELINES, provider_effects


@pytest.fixture(scope="module")
def stage() -> Iterator[World]:
    with world(STAGE) as running:
        yield running


@pytest.mark.parametrize(
    "pipeline",
    [pytest.param(p, id=p.name.replace(" ", "-")) for p in PIPELINES],
)
def test_a_crash_at_any_boundary_ends_in_one_effect_or_a_reasoned_dead_letter(
    stage: World, pipeline: Pipeline
) -> None:
    report = crash_everywhere(stage, pipeline, every=False)
    REPORTS.append(report)

    assert report.calls, "no outbound call found: the boundaries are not wrapped"
    assert report.crashes == 1 + sum(1 for call in report.calls if not call.reads)
    assert [str(v) for v in report.failures] == []


def test_a_message_that_vanishes_is_counted_as_lost(stage: World) -> None:
    """The harness's own check: an entry point that answers 200 and does nothing."""
    vanishing = Pipeline(
        "vanishing", lambda world, run_id: HttpEntry(lambda: HttpReply(200, {})), provider_effects
    )

    verdict = crash_run(stage, vanishing, None)

    assert verdict.lost
    assert not verdict.ok
