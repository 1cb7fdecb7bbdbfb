"""``python -m mailroom_local chalice-local``: ``chalice local`` run by hand, joined to a running
local stack, or stopped at once saying why.

``app.py`` imports nothing from the local stack, so this runner fills the environment the stack
wrote into ``local.json`` (``MAILROOM_LOCAL_STACK_FILE``, default ``.mailroom/local.json``)
before Chalice imports the app; without a running stack it exits 1 with one line naming the
missing variable and ``make run``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, MutableMapping
from pathlib import Path
from typing import Any

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


def chalice_local(stack_file: str, chalice_args: list[str]) -> int:
    """Join the running stack, then run ``chalice local --stage local`` with ``chalice_args``."""
    attach(stack_file)
    from chalice.cli import cli

    # No auto-reloader: it re-executes sys.argv, which here is this module, not `chalice`.
    local = ["local", "--stage", "local", "--no-autoreload", *chalice_args]
    args = ["--project-dir", str(ROOT), *local]
    cli.main(args=args, obj={}, prog_name="chalice")  # exits with chalice's own status
    return 0


def stack_client(local: dict[str, Any], service: str) -> Any:
    """A boto3 client of the running stack's AWS (moto), from its ``local.json``."""
    import boto3

    return boto3.client(
        service,
        endpoint_url=local["aws_endpoint_url"],
        region_name=local["region"],
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def queued(local: dict[str, Any], names: Iterable[str] | None = None, *, sqs: Any = None) -> int:
    """Messages waiting or in flight in the stack's queues ``names`` (default: every work
    queue, dead-letter queues aside)."""
    sqs = sqs or stack_client(local, "sqs")
    wanted = [n for n in local["queues"] if not n.endswith("-dlq")] if names is None else names
    attributes = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    return sum(
        int(value)
        for name in wanted
        for value in sqs.get_queue_attributes(
            QueueUrl=local["queues"][name], AttributeNames=attributes
        )["Attributes"].values()
    )
