"""A probe conversation found in FreeScout is deleted, so agents never see it."""

from __future__ import annotations

from collections.abc import Callable

import responses

from chalicelib.handlers.probe import checks as probe
from chalicelib.platform.settings import Settings
from tests.conftest import FREESCOUT_URL


def test_found_probe_conversation_is_deleted_and_latency_comes_from_its_creation(
    probe_settings: Callable[[], Settings],
) -> None:
    settings = probe_settings()
    record = probe.new_probe(probe.ProbeKind.INBOUND, now=1_800_000_000.0)
    conversations = f"{FREESCOUT_URL}/api/conversations"
    client = probe.ProbeFreeScout(FREESCOUT_URL, "freescout-key")
    with responses.RequestsMock() as mock:
        mock.add(
            responses.GET,
            conversations,
            match=[responses.matchers.query_param_matcher({"subject": record.subject})],
            json={"_embedded": {"conversations": [{"id": 7, "createdAt": "2027-01-15T08:00:02Z"}]}},
        )
        delete = mock.add(responses.DELETE, f"{conversations}/7", status=204)

        settled = probe.check_probe(settings, record, freescout=client, now=record.sent_at + 60)

    assert settled.status is probe.ProbeStatus.PASSED
    assert settled.detail == "conversation 7"
    assert settled.latency_ms == 2000.0
    assert delete.call_count == 1
