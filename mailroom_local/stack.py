"""Start the whole pipeline on loopback: moto, the stand-ins, the HTTP routes and the pump.

Writes ``<state_dir>/local.json`` (addresses, credentials and the functions' environment)
once its own API answers on the port written there, prints a banner, and stops every part on
Ctrl-C or SIGTERM. Every start is clean: moto is in memory and the stand-ins' files of the
previous run are removed. A second start while one runs says so and exits 1; a busy API port
is one line naming it, exit 3.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
# The functions' timeout locally: the pump's deadline and the idempotency lock's expiry alike.
LOCAL_FUNCTION_TIMEOUT_SECONDS = 10
# Short visibility locally, so a retry comes within seconds (in AWS it is 6 x the function
# timeout); longer than one call's 3 s HTTP timeout.
LOCAL_VISIBILITY_SECONDS = 5
# What the stand-ins write for people to read; removed at start so runs do not mix.
STANDIN_DIRS = ("freescout", "postmark", "gmail")
LOG_FILE = "stack.log"
CALLS_FILE = "calls.jsonl"  # every AWS call each function made (mailroom_local.iam)
PORT_BUSY = 3
# Ctrl-C or SIGTERM to everything gone: the parts stop side by side within this, and a child
# still running after it is killed.
STOP_SECONDS = 3.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    """True when something holds ``port`` on loopback (bound or answering)."""
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            return True
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _wait_for_api(
    api_url: str, nonce: str, deadline: float, process: subprocess.Popen[bytes]
) -> None:
    """Until the API process we started answers our nonce: another process on the port never
    passes for ours."""
    import requests

    while time.monotonic() < deadline:
        if process.poll() is not None:
            if process.returncode == PORT_BUSY:
                raise SystemExit(PORT_BUSY)  # the API process said which port, in one line
            raise SystemExit(f"error: the API process exited with code {process.returncode}")
        try:
            answer = requests.get(f"{api_url}/_local/ping", timeout=2)
            if answer.status_code == 200 and answer.text == nonce:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)  # polling a process that is starting, bounded by the deadline
    raise SystemExit("error: the API did not start within 60 s")


def spawn(
    state_dir: Path, *, env: dict[str, str] | None = None, pollers: int | None = None
) -> subprocess.Popen[bytes]:
    """Start ``python -m mailroom_local run`` on free ports in a child process, as a user
    would; it is up once ``state_dir/local.json`` exists."""
    extra = [] if pollers is None else ["--pollers", str(pollers)]
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
            *extra,
        ],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@contextmanager
def attached(
    state_dir: Path | None, *, prefix: str, pollers: int | None = None
) -> Iterator[dict[str, Any]]:
    """The ``local.json`` of the stack running in ``state_dir``, or else of one started for the
    block (in a new temporary directory named ``prefix``…) and stopped after it, with its
    ``state_dir`` added. A stack that exits, or has not written ``local.json`` within 120 s,
    is exit code 2."""
    process = None
    if state_dir is None:
        state_dir = Path(tempfile.mkdtemp(prefix=prefix))
        process = spawn(state_dir, pollers=pollers)
    try:
        local_json = state_dir / "local.json"
        deadline = time.monotonic() + 120
        while not local_json.exists():
            if (process is not None and process.poll() is not None) or time.monotonic() > deadline:
                print("the local stack did not start", file=sys.stderr)
                raise SystemExit(2)
            time.sleep(0.1)  # waiting for the stack, bounded by the deadline
        yield {**json.loads(local_json.read_text()), "state_dir": str(state_dir)}
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=60)


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


def _log_to_file(path: Path) -> None:
    """The pipelines' JSON lines (the pump runs them in this process) also go to ``path``,
    where ``mailroom --local trace`` reads them."""
    from chalicelib.platform.logging import JsonFormatter, get_logger

    handler = logging.FileHandler(path)
    handler.setFormatter(JsonFormatter())
    get_logger().addHandler(handler)


def start_clean(state_dir: Path) -> None:
    """Remove what a previous run left: its ``local.json`` and the stand-ins' files."""
    (state_dir / "local.json").unlink(missing_ok=True)
    (state_dir / LOG_FILE).unlink(missing_ok=True)
    (state_dir / CALLS_FILE).unlink(missing_ok=True)
    (state_dir / "mappings.json").unlink(missing_ok=True)  # a fresh stack starts enabled
    for name in STANDIN_DIRS:
        shutil.rmtree(state_dir / name, ignore_errors=True)


@dataclass
class _Moto:
    """moto with the local stack's SQS patches, in its own process (mailroom_local.moto_process)."""

    process: subprocess.Popen[str]
    port: int

    def stop(self) -> None:
        _end(self.process, time.monotonic() + STOP_SECONDS)


def _end(process: subprocess.Popen[Any], deadline: float) -> None:
    """SIGTERM ``process`` (if it still runs), wait until ``deadline``, then kill it."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _start_moto() -> _Moto:
    process = subprocess.Popen(
        [sys.executable, "-m", "mailroom_local.moto_process"],
        cwd=Path(__file__).resolve().parent.parent,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().split()  # "port <n>" once it listens
    if len(line) != 2 or line[0] != "port":
        process.kill()
        raise SystemExit("error: the embedded AWS (moto) did not start")
    return _Moto(process, int(line[1]))


@dataclass
class _Api:
    process: subprocess.Popen[bytes]
    nonce: str


def _start_api(port: int, env: dict[str, str]) -> _Api:
    nonce = secrets.token_hex(16)
    process = subprocess.Popen(
        [sys.executable, "-m", "mailroom_local.api", "--port", str(port), "--stage", STAGE],
        cwd=Path(__file__).resolve().parent.parent,
        env={**env, "MAILROOM_LOCAL_API_NONCE": nonce},
        stdin=subprocess.PIPE,  # closed when we exit, however we exit: the API stops too
    )
    return _Api(process, nonce)


def run(
    state_dir: Path, *, api_port: int, report_batch_item_failures: bool, pollers: int = 4
) -> int:
    state_dir.mkdir(parents=True, exist_ok=True)
    pid_file = state_dir / "stack.pid"
    running = _already_running(pid_file)
    if running is not None:
        print(f"mailroom local stack is already running (pid {running}); stop it first.")
        return 1
    if api_port and port_in_use(api_port):
        print(
            f"error: port {api_port} is already in use; stop what holds it or pick another "
            "(make run API_PORT=0 takes any free port)",
            flush=True,
        )
        return PORT_BUSY
    pid_file.write_text(str(os.getpid()))
    start_clean(state_dir)
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    parts: list[Any] = []
    api_process: subprocess.Popen[bytes] | None = None
    try:
        import boto3
        from botocore.config import Config

        from chalicelib.platform.aws import POOLED_CONNECTIONS
        from mailroom_local import freescout, gmail, iam, postmark, ses
        from mailroom_local.mappings import FILE as MAPPINGS_FILE
        from mailroom_local.provision import provision
        from mailroom_local.pump import Pump

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request is noise
        _log_to_file(state_dir / LOG_FILE)
        moto = _start_moto()
        parts.append(moto)
        endpoint = f"http://127.0.0.1:{moto.port}"
        # The SES stand-in publishes its feedback once the topic exists (after provisioning).
        feedback: list[Callable[[str], None]] = []
        # Bound on port 0: no race with other processes for a port picked earlier.
        standins = {
            "freescout": serve(freescout.create_app(api_key=FREESCOUT_KEY, state_dir=state_dir)),
            "postmark": serve(
                postmark.create_app(server_token=POSTMARK_TOKEN, state_dir=state_dir)
            ),
            "gmail": serve(gmail.create_app(state_dir=state_dir, **GMAIL_CLIENT)),
            "ses": serve(ses.create_app(publish=lambda: feedback[0] if feedback else None)),
        }
        parts.extend(standins.values())
        freescout_port = standins["freescout"].server_port
        postmark_port = standins["postmark"].server_port
        gmail_port = standins["gmail"].server_port
        ses_port = standins["ses"].server_port
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
            "MAILROOM_FUNCTION_TIMEOUT_SECONDS": str(LOCAL_FUNCTION_TIMEOUT_SECONDS),
            # Stand-ins on loopback answer in milliseconds; a short timeout makes a slow-answer
            # fault (``delay_ms``) look like a real timeout within seconds.
            "MAILROOM_HTTP_TIMEOUT_SECONDS": "3",
            # Postmark's search may lag a message it has just taken (the stand-in does not;
            # this keeps the local timing like AWS's, where retries come minutes later).
            "MAILROOM_PROOF_DELAY_SECONDS": "5",
            "MAILROOM_GMAIL_API_URL": f"http://127.0.0.1:{gmail_port}",
            "MAILROOM_GMAIL_TOKEN_URL": f"http://127.0.0.1:{gmail_port}/token",
            "MAILROOM_SES_ENDPOINT_URL": f"http://127.0.0.1:{ses_port}",
            "MAILROOM_BOUNCE_SENDER": BOUNCE_SENDER,
            # Postmark first, SES when Postmark is down (the stand-ins' faults show both).
            "MAILROOM_OUTBOUND_PROVIDERS": "postmark,ses",
            "MAILROOM_FAILOVER_PROBE_SECONDS": "5",
            # The failover probe sends to Postmark's test sink from this address.
            "MAILROOM_PROBE_FROM": "probe@mailroom.test",
        }
        os.environ.update(env)

        def client(service: str) -> Any:
            # The pump's pollers share this client: pool a connection for each of them.
            pooled = Config(max_pool_connections=POOLED_CONNECTIONS)
            return boto3.client(service, endpoint_url=endpoint, region_name=REGION, config=pooled)

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
        feedback_topic = resources.topics["ses-feedback"]
        sns = client("sns")
        feedback.append(lambda body: sns.publish(TopicArn=feedback_topic, Message=body))
        env["MAILROOM_INBOUND_TOPIC_ARN"] = resources.topics["inbound"]
        env["MAILROOM_OUTBOUND_TOPIC_ARN"] = resources.topics["outbound"]
        env["MAILROOM_MAIL_BUCKET"] = resources.bucket
        os.environ.update(env)
        from mailroom_local.demo import seed_routes

        # The demo's routes, as the stack itself (before any principal is installed).
        seed_routes(client("dynamodb"), resources.routes_table)
        # Each function signs as its own IAM user with its deployed policy; the API process
        # is the api_handler function (and `chalice local` by hand, through local.json).
        credentials = iam.create_principals(client("iam"), STAGE)
        calls = state_dir / CALLS_FILE
        iam.install(credentials, calls, region=REGION)
        api_keys = credentials["api_handler"]
        env.update(
            {
                "AWS_ACCESS_KEY_ID": api_keys["aws_access_key_id"],
                "AWS_SECRET_ACCESS_KEY": api_keys["aws_secret_access_key"],
                iam.CALLS_VARIABLE: str(calls),
                iam.FUNCTION_VARIABLE: "api_handler",
            }
        )

        # The routes as `chalice local` serves them, with a backlog for bursts
        # (mailroom_local.api); the nonce proves that what answers on the port is ours.
        for attempt in range(3):
            port = api_port or free_port()
            api, api_url = _start_api(port, {**os.environ, **env}), f"http://127.0.0.1:{port}"
            api_process = api.process
            try:
                _wait_for_api(api_url, api.nonce, time.monotonic() + 60, api.process)
                break
            except SystemExit as busy:
                # A free port picked for us was taken meanwhile: pick again.
                if busy.code != PORT_BUSY or api_port or attempt == 2:
                    raise

        app_module = importlib.import_module("app")
        pump_session = boto3.session.Session()
        iam.prepare(pump_session)
        pump = Pump(
            app_module,
            pump_session.client("sqs", endpoint_url=endpoint, region_name=REGION),
            region=REGION,
            report_batch_item_failures=report_batch_item_failures,
            pollers=pollers,
            function_timeout_ms=LOCAL_FUNCTION_TIMEOUT_SECONDS * 1000,
            principal=iam.acting_as,
            mappings=state_dir / MAPPINGS_FILE,
        )
        handlers = pump.start()
        parts.append(pump)

        local = {
            "pid": os.getpid(),
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
            "log_file": str(state_dir / LOG_FILE),
            # Each function's and the operator's IAM keys; `local` is the administrator.
            "credentials": credentials,
            "calls_file": str(calls),
            "pump": {
                "handlers": handlers,
                "pollers": pollers,
                "report_batch_item_failures": report_batch_item_failures,
            },
            # What the functions run with: `chalice local` started by hand reads it
            # (`python -m mailroom_local chalice-local`) to join this stack.
            "env": env,
        }
        # Written whole under another name, then renamed: readers wait for the file to exist,
        # and one that opened it while it was being written read it empty.
        partial = state_dir / "local.json.partial"
        partial.write_text(json.dumps(local, indent=2))
        partial.replace(state_dir / "local.json")
        _banner(local, state_dir)
        stopping.wait()
        return 0
    finally:
        print("stopping mailroom local stack", flush=True)
        _stop(parts, api_process)
        (state_dir / "local.json").unlink(missing_ok=True)
        pid_file.unlink(missing_ok=True)


def _stop(parts: list[Any], api_process: subprocess.Popen[bytes] | None) -> None:
    """Stop every part side by side: the children are told at once, the pump and the
    stand-ins stop meanwhile, and whatever still runs at the deadline is killed."""
    deadline = time.monotonic() + STOP_SECONDS
    children: list[subprocess.Popen[Any]] = [p.process for p in parts if isinstance(p, _Moto)]
    if api_process is not None:
        children.append(api_process)
    for child in children:
        if child.poll() is None:
            child.terminate()
    stopping = [
        threading.Thread(target=getattr(part, "shutdown", None) or part.stop, daemon=True)
        for part in parts
        if not isinstance(part, _Moto)
    ]
    for thread in stopping:
        thread.start()
    for child in children:
        _end(child, deadline)
    for thread in stopping:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))


def _banner(local: dict[str, Any], state_dir: Path) -> None:
    hook = local["webhook"]
    pump = local["pump"]
    print(
        f"""
mailroom local stack is up (state in {state_dir}/, details in {state_dir}/local.json)
  API (chalice local)   {local["api_url"]}
  embedded AWS (moto)   {local["aws_endpoint_url"]}
  FreeScout stand-in    {local["freescout"]["url"]}
  Postmark stand-in     {local["postmark"]["url"]}
  Gmail stand-in        {local["gmail"]["url"]}
  SES stand-in          {local["ses"]["url"]}
  pump handlers         {", ".join(pump["handlers"])} ({pump["pollers"]} pollers each)

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
