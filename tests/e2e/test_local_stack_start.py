"""Starting the local stack as a new user would: busy ports, `chalice local` by hand, bursts,
a clean restart."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from chalicelib.providers.freescout.delivery import unmarked
from mailroom_local import stack as local_stack
from tests.e2e.conftest import until

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "tests" / "events" / "postmark_inbound_basic.json"

pytestmark = pytest.mark.e2e


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAILROOM_"))}


def test_a_busy_api_port_stops_the_start_with_one_line_naming_it(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        started = subprocess.run(
            [
                sys.executable,
                "-m",
                "mailroom_local",
                "run",
                "--state-dir",
                str(tmp_path),
                "--api-port",
                str(port),
            ],
            cwd=ROOT,
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert started.returncode == local_stack.PORT_BUSY
    [line] = started.stdout.strip().splitlines()
    assert line.startswith(f"error: port {port} is already in use")
    assert not (tmp_path / "local.json").exists()


def test_the_api_takes_a_burst_of_concurrent_posts_without_resetting_connections(
    stack: dict[str, Any],
) -> None:
    hook = stack["webhook"]
    base = json.loads(SAMPLE.read_text())

    def post(n: int) -> int:
        email = {**base, "MessageID": f"burst-{uuid.uuid4()}", "Headers": []}
        email["To"] = f"burst{n}@example.com"
        answer = requests.post(
            hook["url"], json=email, auth=(hook["username"], hook["password"]), timeout=30
        )
        return answer.status_code

    with ThreadPoolExecutor(max_workers=30) as pool:
        statuses = list(pool.map(post, range(30)))

    assert statuses == [200] * 30


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_chalice_local_by_hand_joins_the_running_stack(stack: dict[str, Any]) -> None:
    hook = stack["webhook"]
    email = json.loads(SAMPLE.read_text())
    email["MessageID"] = f"by-hand-{uuid.uuid4()}"
    email["HtmlBody"] = f"<p>{email['MessageID']}</p>"
    email["Headers"] = []
    port = _free_port()
    stack_file = str(Path(stack["state_dir"]) / "local.json")
    command = ["-m", "mailroom_local", "chalice-local", "--stack-file", stack_file]
    server = subprocess.Popen(
        [sys.executable, *command, "--port", str(port)],
        cwd=ROOT,
        env=_clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    def post() -> int | None:
        assert server.poll() is None, server.stderr.read() if server.stderr else ""
        try:
            return requests.post(
                f"http://127.0.0.1:{port}/webhooks/postmark/inbound",
                json=email,
                auth=(hook["username"], hook["password"]),
                timeout=30,
            ).status_code
        except requests.ConnectionError:
            return None  # not listening yet

    try:
        assert until(post, seconds=60) == 200
    finally:
        server.terminate()
        server.communicate(timeout=30)
    freescout = stack["freescout"]["url"]

    def delivered() -> bool:
        found = requests.get(f"{freescout}/_control/conversations", timeout=10).json()
        bodies = [
            unmarked(t["body"]) for c in found["conversations"] for t in c["_embedded"]["threads"]
        ]
        return email["HtmlBody"] in bodies

    until(delivered, seconds=60)


def test_chalice_local_by_hand_without_a_stack_fails_at_once_naming_the_variable(
    tmp_path: Path,
) -> None:
    env = _clean_env() | {"MAILROOM_LOCAL_STACK_FILE": str(tmp_path / "local.json")}

    done = subprocess.run(
        [sys.executable, "-m", "mailroom_local", "chalice-local", "--port", str(_free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: MAILROOM_AWS_ENDPOINT_URL is not set")
    assert "make run" in line


def test_a_restart_starts_clean(tmp_path: Path) -> None:
    (tmp_path / "freescout").mkdir()
    (tmp_path / "freescout" / "conversation-7.json").write_text("{}")
    (tmp_path / "local.json").write_text("{}")
    (tmp_path / "keep.txt").write_text("not ours")

    local_stack.start_clean(tmp_path)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def _send(stack: dict[str, Any], tmp_path: Path, to: str) -> subprocess.CompletedProcess[str]:
    request = {
        "correlation_id": f"send-{uuid.uuid4()}",
        "from": "Shop <shop@example.com>",
        "to": to,
        "subject": "Your receipt",
        "text_body": "Thanks",
    }
    request_file = tmp_path / "request.json"
    request_file.write_text(json.dumps(request))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mailroom_local",
            "send",
            str(request_file),
            "--state-dir",
            stack["state_dir"],
        ],
        cwd=ROOT,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_make_send_returns_once_sent_and_says_so(stack: dict[str, Any], tmp_path: Path) -> None:
    done = _send(stack, tmp_path, "ann@example.org")

    assert done.returncode == 0, done.stdout
    assert done.stdout.strip().splitlines()[-1].startswith("-> sent: ")


def test_make_send_says_when_the_recipient_is_suppressed(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    from chalicelib.mail.suppression import SuppressionList
    from tests.e2e.conftest import aws_client

    address = f"gone-{uuid.uuid4().hex[:8]}@example.org"
    suppressions = SuppressionList(stack["tables"]["state"], client=aws_client(stack, "dynamodb"))
    suppressions.add(address, reason="hard bounce", source="test")

    done = _send(stack, tmp_path, address)

    assert done.returncode == 0, done.stdout
    assert done.stdout.strip().splitlines()[-1].startswith("-> suppressed: ")
