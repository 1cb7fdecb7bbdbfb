"""A folder of real-world mail received as SES would, on the running local stack: CPython's
email test corpus by default (48 messages shipped in the interpreter's own test package: no
From, no Message-ID, broken MIME, 8-bit headers), for ``tests/e2e/test_corpus.py`` and
``bench/corpus.py``."""

from __future__ import annotations

import contextlib
import io
import sysconfig
import time
from collections.abc import Iterable
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from chalicelib.mail.inbound_email import message_ids
from mailroom_local.attach import queued
from mailroom_local.receive import receive

CORPUS = Path(sysconfig.get_paths()["stdlib"]) / "test" / "test_email" / "data"


def corpus_files(folder: Path = CORPUS) -> list[Path]:
    """The corpus's messages (``msg_*.txt``), else every ``*.eml`` in ``folder``."""
    return sorted(folder.glob("msg_*.txt")) or sorted(folder.glob("*.eml"))


def receive_all(
    state_dir: Path, files: Iterable[Path], recipients: Iterable[str]
) -> dict[str, str]:
    """Receive each file for ``recipients``: file name → SES message id. A file ``receive``
    refuses raises ``ValueError`` with its one line."""
    to = ",".join(recipients)
    received: dict[str, str] = {}
    for eml in files:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = receive(state_dir, eml, to=to)
        if code != 0:
            raise ValueError(out.getvalue().strip())
        received[eml.name] = out.getvalue().split()[-1]
    return received


def wait_settled(local: dict[str, Any], *, seconds: float) -> bool:
    """True once no work queue holds a message (polled), False if ``seconds`` pass first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if queued(local) == 0:
            return True
        time.sleep(0.5)  # polling the stack's queues, bounded by the deadline
    return False


def message_id(eml: Path) -> str | None:
    """The file's RFC Message-ID without angle brackets, as an operator would paste it."""
    parsed = message_from_bytes(eml.read_bytes(), policy=default_policy)
    try:
        found = message_ids(str(parsed["Message-ID"] or ""))
    except (ValueError, IndexError):  # a header the parser cannot read: SES's id finds it
        return None
    return found[0].strip("<>") if found else None
