"""``python -m mailroom_local.api --port N``: the HTTP routes as ``chalice local`` serves them,
with a listen backlog for bursts and a ping that proves which process answers.

``chalice local`` keeps the standard library's backlog of 5, so 20 concurrent posts get
connections reset; this serves the same app through Chalice's own local gateway (same
routing, same request and response mapping) on a threaded server with a backlog of 128.
``GET /_local/ping`` answers the ``MAILROOM_LOCAL_API_NONCE`` it was started with, so the
stack writes ``local.json`` only once *its* API answers on the port. A busy port is one line
naming it, exit code 3.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BACKLOG = 128
PING_PATH = "/_local/ping"
NONCE_VARIABLE = "MAILROOM_LOCAL_API_NONCE"
PORT_BUSY = 3


def build_server(host: str, port: int, *, stage: str = "local", nonce: str = "") -> Any:
    """Chalice's local dev server for ``app.py`` with our backlog and ping; bound, not serving."""
    from chalice import local as chalice_local
    from chalice.cli.factory import CLIFactory

    class Server(chalice_local.ThreadedHTTPServer):  # type: ignore[misc]
        request_queue_size = BACKLOG

    class Handler(chalice_local.ChaliceRequestHandler):  # type: ignore[misc]
        def do_GET(self) -> None:
            if self.path == PING_PATH:
                body = nonce.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            super().do_GET()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the app logs one JSON line per request; the access log is noise

    factory = CLIFactory(project_dir=str(ROOT), environ=os.environ)
    config = factory.create_config_obj(chalice_stage_name=stage)
    app = config.chalice_app
    chalice_local.CustomLocalChalice.__bases__ = (chalice_local.LocalChalice, app.__class__)
    app.__class__ = chalice_local.CustomLocalChalice
    return chalice_local.LocalDevServer(
        app, config, host, port, handler_cls=Handler, server_cls=Server
    )


def _act_as_function(env: Any) -> None:
    """Started by the stack: sign as the API function's user and record its calls."""
    from mailroom_local import iam

    function, calls = env.get(iam.FUNCTION_VARIABLE), env.get(iam.CALLS_VARIABLE)
    if not function or not calls or not env.get("AWS_ACCESS_KEY_ID"):
        return
    keys = {
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env.get("AWS_SECRET_ACCESS_KEY", ""),
    }
    iam.install(
        {function: keys}, Path(calls), function=function, region=env.get("AWS_REGION", "us-east-1")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mailroom_local.api")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--stage", default="local")
    args = parser.parse_args(argv)
    _act_as_function(os.environ)
    try:
        server = build_server(
            args.host, args.port, stage=args.stage, nonce=os.environ.get(NONCE_VARIABLE, "")
        )
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            print(f"error: port {args.port} is already in use", file=sys.stderr, flush=True)
            return PORT_BUSY
        raise
    if os.environ.get(NONCE_VARIABLE):
        # Started by the stack, which holds our stdin: if it dies without stopping us,
        # reading ends and we stop too, rather than hold the port.
        threading.Thread(
            target=lambda: (sys.stdin.read(), server.server.shutdown()), daemon=True
        ).start()
    with contextlib.suppress(KeyboardInterrupt):
        server.server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
