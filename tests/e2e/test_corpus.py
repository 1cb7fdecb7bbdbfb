"""Real-world mail received as SES would (``mailroom_local.corpus``: CPython's email test
corpus), for a FreeScout and a Gmail route at once: each message is received without a
traceback, ends delivered or dead-lettered with its reason, and ``mailroom trace`` finds it
by its SES id and by its Message-ID typed without angle brackets. Six of the shapes here;
``bench/corpus.py`` runs all 48."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mailroom_cli.main import cli
from mailroom_local.corpus import CORPUS, message_id, receive_all, wait_settled
from mailroom_local.demo import SES_DOMAIN, _seed_ses_routes

RECIPIENTS = (f"support@{SES_DOMAIN}", f"gmail-demo@{SES_DOMAIN}")
# A message/rfc822 without From (11), no header block at all (19), a Message-ID (16), a
# Windows MTA's odd MIME (15), 8-bit charsets (08), a PGP-signed multipart (45).
SHAPES = ("08", "11", "15", "16", "19", "45")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CORPUS.is_dir(), reason=f"no email test corpus at {CORPUS}"),
]


def _trace(stack: dict[str, Any], ident: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        cli,
        ["--local", "--state-dir", stack["state_dir"], "--json", "trace", ident],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, f"trace {ident}: {result.output}"
    return dict(json.loads(result.stdout))


def test_real_world_mail_is_received_settled_and_traced_by_each_of_its_ids(
    own_stack: dict[str, Any],
) -> None:
    _seed_ses_routes(own_stack)
    files = [CORPUS / f"msg_{n}.txt" for n in SHAPES]
    ses_ids = receive_all(Path(own_stack["state_dir"]), files, RECIPIENTS)

    assert wait_settled(own_stack, seconds=120)
    unsettled = []
    for name, ses_id in ses_ids.items():
        report = _trace(own_stack, ses_id)
        provider = report["answers"]["did the provider accept it"]
        delivered = all(action in provider for action in ("freescout", "gmail"))
        reasoned = report["dead_letters"] and all(d.get("reason") for d in report["dead_letters"])
        if report["answers"]["did we accept it"] == "no record of it" or not (
            delivered or reasoned
        ):
            unsettled.append(f"{name}: {report['answers']}")
    assert unsettled == []

    rfc_id = message_id(CORPUS / "msg_16.txt")
    assert rfc_id is not None
    assert ses_ids["msg_16.txt"] in json.dumps(_trace(own_stack, rfc_id))
