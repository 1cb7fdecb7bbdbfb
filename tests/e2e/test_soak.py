"""A short soak through the local stack: emails in and requests out while FreeScout and
Postmark flap; every message ends delivered once, suppressed, or dead-lettered with a reason."""

from __future__ import annotations

import time
from typing import Any

import pytest

from mailroom_local.soak import Soak

pytestmark = pytest.mark.e2e


def test_flapping_providers_lose_nothing_double_nothing_and_dead_letter_with_reasons(
    own_stack: dict[str, Any],
) -> None:
    started = time.monotonic()

    report = Soak(own_stack, inbound=40, outbound=20).run(settle_seconds=75)

    summary = "\n".join(report.lines())
    assert report.lost == [], summary
    assert report.doubled == [], summary
    assert report.reasonless == 0, summary
    assert report.unsettled == [], summary
    assert report.delivered + sum(report.dead_lettered.values()) >= 1, summary
    assert time.monotonic() - started < 90, summary
