"""Lets ``chalice local`` run by hand join a running local stack, or fail at once saying why.

``.chalice/config.json``'s ``local`` stage sets ``MAILROOM_LOCAL_STACK_FILE``; ``app.py`` then
calls ``attach`` at import. Started by ``make run`` (the environment is complete) it does
nothing; by hand, it fills the environment the stack wrote into ``local.json``, or stops the
server before it serves with one line naming the missing variable and ``make run``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import MutableMapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The variable whose absence means "not started by the stack"; the first a request needs.
MARKER = "MAILROOM_AWS_ENDPOINT_URL"


class NotAttached(Exception):
    """No running stack to join; the message is the one line the user sees."""


def _alive(pid: object) -> bool:
    try:
        os.kill(int(str(pid)), 0)
    except (ValueError, ProcessLookupError, PermissionError):
        return False
    return True


def environment(stack_file: str, env: MutableMapping[str, str]) -> dict[str, str]:
    """The variables to add to ``env`` from a running stack's ``local.json``."""
    if env.get(MARKER):
        return {}
    path = Path(stack_file)
    path = path if path.is_absolute() else ROOT / path
    hint = (
        f"{MARKER} is not set and no local stack is running ({path} {{}}); "
        "start one with `make run`"
    )
    try:
        local = json.loads(path.read_text())
    except FileNotFoundError:
        raise NotAttached(hint.format("not found")) from None
    except ValueError:
        raise NotAttached(hint.format("is not JSON")) from None
    if not isinstance(local, dict) or not isinstance(local.get("env"), dict):
        raise NotAttached(hint.format("has no env section; restart the stack"))
    if not _alive(local.get("pid")):
        raise NotAttached(hint.format("is left from a stack that has stopped"))
    return {k: str(v) for k, v in local["env"].items() if not env.get(k)}


def attach(stack_file: str) -> None:
    """Fill ``os.environ`` from the running stack, or exit 1 with one line."""
    try:
        os.environ.update(environment(stack_file, os.environ))
    except NotAttached as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
