"""Stopping the local stack: Ctrl-C (SIGINT to the foreground process group) and SIGTERM each
end every process of it within 5 seconds, its ports free, while mail is in flight."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import requests

from tests.e2e.conftest import until

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "tests" / "events" / "postmark_inbound_basic.json"
STOP_WITHIN_SECONDS = 5.0

pytestmark = pytest.mark.e2e


def _children(pid: int) -> set[int]:
    """Every process descended from ``pid`` (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; only its parent's wait is missing


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _post_mail(local: dict[str, Any], count: int) -> None:
    hook = local["webhook"]
    email = json.loads(SAMPLE.read_text())

    def post(n: int) -> None:
        email_n = {**email, "MessageID": f"stop-{uuid.uuid4()}-{n}"}
        requests.post(
            hook["url"], json=email_n, auth=(hook["username"], hook["password"]), timeout=10
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(post, range(count)))


@pytest.mark.parametrize(
    "how", ["sigint-to-the-process-group", "sigterm-to-the-stack"], ids=lambda h: h
)
def test_the_stack_stops_every_part_within_five_seconds(how: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAILROOM_"))}
    # As a terminal runs `make run`: a process group of its own, which Ctrl-C signals whole.
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mailroom_local",
            "run",
            "--state-dir",
            str(tmp_path),
            "--api-port=0",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        local_json = tmp_path / "local.json"
        until(lambda: local_json.exists() or process.poll() is not None, seconds=120)
        assert process.poll() is None, "the local stack exited during start-up"
        local = json.loads(local_json.read_text())
        urls = [local["api_url"], local["aws_endpoint_url"]]
        urls += [local[name]["url"] for name in ("freescout", "postmark", "gmail", "ses")]
        ports = [int(urlparse(u).port or 0) for u in urls]
        _post_mail(local, 20)  # batches in flight while it stops
        processes = {process.pid, *_children(process.pid)}
        assert len(processes) >= 3  # the stack, the embedded AWS, the API

        started = time.monotonic()
        if how == "sigint-to-the-process-group":
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(signal.SIGTERM)
        process.wait(timeout=STOP_WITHIN_SECONDS + 5)
        until(lambda: not any(_alive(p) for p in processes), seconds=STOP_WITHIN_SECONDS)
        took = time.monotonic() - started
        assert took < STOP_WITHIN_SECONDS
        assert [p for p in ports if not _port_free(p)] == []
        assert not local_json.exists()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
