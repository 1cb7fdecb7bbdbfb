"""``python -m infra.gmail_auth --stage prod --mailbox team@example.com --client-secrets FILE``.

Authorizes mailroom to import into one Gmail mailbox and stores the credential straight into
SSM (SecureString ``/mailroom/<stage>/gmail/<local>_at_<domain>``): the OAuth installed-app
flow with PKCE and a redirect to a one-shot listener on 127.0.0.1, so no secret is typed,
pasted or echoed into a shell history. ``FILE`` is the OAuth client JSON downloaded from the
Google Cloud console (type "Desktop app"). Run it again to re-authorize after ``invalid_grant``;
the old value is overwritten and the forwarder picks the new one up within the secrets TTL.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import secrets
import sys
import urllib.parse
import webbrowser
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import requests

from chalicelib.providers.gmail.client import parameter_name

AUTH_URL = "https://accounts.google.com/o/oauth2/v2/auth"
TOKEN_URL = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL
# Import messages, and search them by Message-ID to settle an uncertain import.
SCOPES = (
    "https://www.googleapis.com/auth/gmail.insert",
    "https://www.googleapis.com/auth/gmail.readonly",
)


def _client(path: Path) -> tuple[str, str]:
    info = json.loads(path.read_text())
    client = info.get("installed") or info.get("web") or info
    return str(client["client_id"]), str(client["client_secret"])


def _wait_for_code(server: HTTPServer, state: str) -> str:
    """Serve one redirect and return its ``code`` (or exit with Google's error)."""
    found: dict[str, str] = {}

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            found.update(query)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.end_headers()
            self.wfile.write(b"mailroom: authorization received; you can close this tab.\n")

        def log_message(self, *args: Any) -> None:
            """Keep the code out of the terminal."""

    server.RequestHandlerClass = Redirect
    while not found:
        server.handle_request()
    if found.get("state") != state:
        raise SystemExit("error: the redirect's state does not match; start again")
    if "code" not in found:
        raise SystemExit(f"error: Google answered {found.get('error', 'without a code')}")
    return found["code"]


def authorize(client_id: str, client_secret: str, mailbox: str) -> str:
    """Run the installed-app flow for ``mailbox``; its refresh token."""
    server = HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    redirect = f"http://127.0.0.1:{server.server_port}"
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    state = secrets.token_urlsafe(16)
    url = (
        AUTH_URL
        + "?"
        + urllib.parse.urlencode(
            {
                "client_id": client_id,
                "redirect_uri": redirect,
                "response_type": "code",
                "scope": " ".join(SCOPES),
                "access_type": "offline",
                "prompt": "consent",  # always return a refresh token
                "login_hint": mailbox,
                "state": state,
                "code_challenge": challenge.decode(),
                "code_challenge_method": "S256",
            }
        )
    )
    print(f"Sign in as {mailbox} and allow access (opening a browser):\n\n  {url}\n", flush=True)
    webbrowser.open(url)
    code = _wait_for_code(server, state)
    server.server_close()
    answer = requests.post(
        TOKEN_URL,
        data={
            "code": code,
            "client_id": client_id,
            "client_secret": client_secret,
            "redirect_uri": redirect,
            "grant_type": "authorization_code",
            "code_verifier": verifier,
        },
        timeout=30,
    )
    body = answer.json()
    if answer.status_code != 200 or "refresh_token" not in body:
        raise SystemExit(
            f"error: the token endpoint answered {answer.status_code} {body.get('error')}"
        )
    return str(body["refresh_token"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.gmail_auth", description=__doc__)
    parser.add_argument("--stage", required=True)
    parser.add_argument("--mailbox", required=True, help="the Gmail address routes target")
    parser.add_argument("--client-secrets", type=Path, required=True, help="OAuth client JSON")
    parser.add_argument("--region", default=None)
    args = parser.parse_args(argv)
    client_id, client_secret = _client(args.client_secrets)
    refresh_token = authorize(client_id, client_secret, args.mailbox)
    import boto3

    name = f"/mailroom/{args.stage}/{parameter_name(args.mailbox)}"
    value = {"client_id": client_id, "client_secret": client_secret, "refresh_token": refresh_token}
    boto3.client("ssm", region_name=args.region).put_parameter(
        Name=name, Value=json.dumps(value), Type="SecureString", Overwrite=True
    )
    print(
        f"stored in SSM as {name} (SecureString); redrive the gmail-forwarder DLQ if it holds mail"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
