"""Start the whole pipeline on loopback: moto, FreeScout stand-in, chalice local and the pump.

Writes ``<state_dir>/local.json`` when everything answers, prints a banner, and stops every
part on Ctrl-C or SIGTERM. A second start while one runs says so and exits 1.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

STAGE = "local"
REGION = "us-east-1"
WEBHOOK_USER, WEBHOOK_PASSWORD = "postmark", "local-webhook-password"
FREESCOUT_KEY = "local-freescout-key"
POSTMARK_TOKEN = "local-postmark-token"
SIGNING_SECRET = "local-signing-secret"
GMAIL_CLIENT = {
    "client_id": "local-client",
    "client_secret": "local-secret",
    "refresh_token": "local-refresh",
}
# SES inbound demo: the Gmail mailbox the demo routes import into, and the bounce sender.
GMAIL_MAILBOX = "demo@gmail.local"
BOUNCE_SENDER = "mailer-daemon@mailroom.test"
# Short visibility locally: a retry within seconds, a poison message in its DLQ within a minute.
LOCAL_VISIBILITY_SECONDS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, deadline: float, process: subprocess.Popen[bytes]) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"error: chalice local exited with code {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)  # polling a port that is not open yet; bounded by the deadline
    raise SystemExit("error: chalice local did not start within 60 s")


def spawn(state_dir: Path, *, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``python -m mailroom_local run`` on free ports in a child process, as a user
    would; it is up once ``state_dir/local.json`` exists."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mailroom_local",
            "run",
            "--state-dir",
            str(state_dir),
            "--api-port",
            "0",
        ],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _already_running(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None
    return pid


def serve(app: Any, port: int = 0) -> Any:
    """Serve a WSGI app on loopback in a thread; ``port=0`` picks a free one (``.server_port``)."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def run(state_dir: Path, *, api_port: int, report_batch_item_failures: bool) -> int:
    state_dir.mkdir(parents=True, exist_ok=True)
    pid_file = state_dir / "stack.pid"
    running = _already_running(pid_file)
    if running is not None:
        print(f"mailroom local stack is already running (pid {running}); stop it first.")
        return 1
    pid_file.write_text(str(os.getpid()))
    (state_dir / "local.json").unlink(missing_ok=True)
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    parts: list[Any] = []
    chalice: subprocess.Popen[bytes] | None = None
    try:
        import boto3
        from moto.server import ThreadedMotoServer

        from mailroom_local import freescout, gmail, postmark, ses
        from mailroom_local.provision import provision
        from mailroom_local.pump import Pump

        moto_port, freescout_port = free_port(), free_port()
        postmark_port, gmail_port = free_port(), free_port()
        ses_port = free_port()
        api_port = api_port or free_port()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per AWS call is noise
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
        moto.start()
        parts.append(moto)
        endpoint = f"http://127.0.0.1:{moto_port}"
        env = {
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "MAILROOM_STAGE": STAGE,
            "MAILROOM_AWS_ENDPOINT_URL": endpoint,
            "MAILROOM_FREESCOUT_URL": f"http://127.0.0.1:{freescout_port}",
            "MAILROOM_POSTMARK_API_URL": f"http://127.0.0.1:{postmark_port}",
            "MAILROOM_SECRETS_TTL_SECONDS": "5",
            "MAILROOM_ROUTES_CACHE_SECONDS": "5",
            "MAILROOM_FUNCTION_TIMEOUT_SECONDS": "10",
            # Stand-ins on loopback answer in milliseconds; a short timeout makes a slow-answer
            # fault (``delay_ms``) look like a real timeout within seconds.
            "MAILROOM_HTTP_TIMEOUT_SECONDS": "3",
            "MAILROOM_GMAIL_API_URL": f"http://127.0.0.1:{gmail_port}",
            "MAILROOM_GMAIL_TOKEN_URL": f"http://127.0.0.1:{gmail_port}/token",
            "MAILROOM_SES_ENDPOINT_URL": f"http://127.0.0.1:{ses_port}",
            "MAILROOM_BOUNCE_SENDER": BOUNCE_SENDER,
        }
        os.environ.update(env)

        def client(service: str) -> Any:
            return boto3.client(service, endpoint_url=endpoint, region_name=REGION)

        resources = provision(
            client,
            STAGE,
            secrets={
                "postmark/webhook-basic-auth": f"{WEBHOOK_USER}:{WEBHOOK_PASSWORD}",
                "freescout/api-key": FREESCOUT_KEY,
                "postmark/server-token": POSTMARK_TOKEN,
                "outbound/signing-secret": SIGNING_SECRET,
                "gmail/" + GMAIL_MAILBOX.replace("@", "_at_"): json.dumps(GMAIL_CLIENT),
            },
            visibility_seconds=LOCAL_VISIBILITY_SECONDS,
            default_route={
                "pattern": "*",
                "action": "freescout",
                "target": "1",
                "description": "local default: everything to FreeScout mailbox 1",
            },
        )
        env["MAILROOM_INBOUND_TOPIC_ARN"] = resources.topics["inbound"]
        env["MAILROOM_OUTBOUND_TOPIC_ARN"] = resources.topics["outbound"]
        env["MAILROOM_MAIL_BUCKET"] = resources.bucket
        os.environ.update(env)
        parts.append(
            serve(freescout.create_app(api_key=FREESCOUT_KEY, state_dir=state_dir), freescout_port)
        )
        parts.append(
            serve(
                postmark.create_app(server_token=POSTMARK_TOKEN, state_dir=state_dir),
                postmark_port,
            )
        )
        parts.append(serve(gmail.create_app(state_dir=state_dir, **GMAIL_CLIENT), gmail_port))
        parts.append(serve(ses.create_app(), ses_port))

        chalice_bin = Path(sys.executable).with_name("chalice")
        chalice = subprocess.Popen(
            [
                str(chalice_bin),
                "local",
                # Without this, chalice reloads whenever the stand-ins write under .mailroom/.
                "--no-autoreload",
                "--stage",
                STAGE,
                "--host",
                "127.0.0.1",
                "--port",
                str(api_port),
            ],
            cwd=Path(__file__).resolve().parent.parent,
            env={**os.environ, **env},
        )
        _wait_for_port(api_port, time.monotonic() + 60, chalice)

        app_module = importlib.import_module("app")
        pump = Pump(
            app_module,
            client("sqs"),
            region=REGION,
            report_batch_item_failures=report_batch_item_failures,
        )
        handlers = pump.start()
        parts.append(pump)

        api_url = f"http://127.0.0.1:{api_port}"
        local = {
            "api_url": api_url,
            "aws_endpoint_url": endpoint,
            "region": REGION,
            "webhook": {
                "url": f"{api_url}/webhooks/postmark/inbound",
                "username": WEBHOOK_USER,
                "password": WEBHOOK_PASSWORD,
                "events_url": f"{api_url}/webhooks/postmark/events",
            },
            "outbound": {
                "url": f"{api_url}/v1/outbound",
                "signing_secret": SIGNING_SECRET,
                "signature_header": "X-Mailroom-Signature",
            },
            "freescout": {"url": env["MAILROOM_FREESCOUT_URL"], "api_key": FREESCOUT_KEY},
            "postmark": {"url": env["MAILROOM_POSTMARK_API_URL"], "server_token": POSTMARK_TOKEN},
            "gmail": {
                "url": f"http://127.0.0.1:{gmail_port}",
                "token_url": f"http://127.0.0.1:{gmail_port}/token",
                "mailbox": GMAIL_MAILBOX,
                **GMAIL_CLIENT,
            },
            "ses": {"url": env["MAILROOM_SES_ENDPOINT_URL"], "bounce_sender": BOUNCE_SENDER},
            "queues": {
                **{name: q.url for name, q in resources.queues.items()},
                **{f"{name}-dlq": q.dlq_url for name, q in resources.queues.items()},
            },
            "topics": resources.topics,
            "tables": {"routes": resources.routes_table, "state": resources.state_table},
            "bucket": resources.bucket,
            "pump": {
                "handlers": handlers,
                "report_batch_item_failures": report_batch_item_failures,
            },
        }
        (state_dir / "local.json").write_text(json.dumps(local, indent=2))
        _banner(local, state_dir)
        stopping.wait()
        return 0
    finally:
        print("stopping mailroom local stack", flush=True)
        if chalice is not None and chalice.poll() is None:
            chalice.terminate()
            try:
                chalice.wait(timeout=10)
            except subprocess.TimeoutExpired:
                chalice.kill()
        for part in reversed(parts):
            (getattr(part, "shutdown", None) or part.stop)()
        (state_dir / "local.json").unlink(missing_ok=True)
        pid_file.unlink(missing_ok=True)


def _banner(local: dict[str, Any], state_dir: Path) -> None:
    hook = local["webhook"]
    print(
        f"""
mailroom local stack is up (state in {state_dir}/, details in {state_dir}/local.json)
  API (chalice local)   {local["api_url"]}
  embedded AWS (moto)   {local["aws_endpoint_url"]}
  FreeScout stand-in    {local["freescout"]["url"]}
  Postmark stand-in     {local["postmark"]["url"]}
  Gmail stand-in        {local["gmail"]["url"]}
  SES stand-in          {local["ses"]["url"]}
  pump handlers         {", ".join(local["pump"]["handlers"])}

Send an email in:
  curl -u {hook["username"]}:{hook["password"]} -H 'Content-Type: application/json' \\
    -d @tests/events/postmark_inbound_basic.json {hook["url"]}
Send an email out (signed with the local secret):
  make send   (or: .venv/bin/python -m mailroom_local send <request.json>)
Receive a raw email as SES would:
  make receive EML=path/to/mail.eml [TO=address] [VERDICTS=spam=FAIL,spf=missing]
Postmark events go to {hook["events_url"]} (same credentials).
Ctrl-C stops everything.""",
        flush=True,
    )
