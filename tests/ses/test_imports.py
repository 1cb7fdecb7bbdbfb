"""Cold-start hygiene: only the Gmail forwarder's code path loads googleapiclient or google.auth,
and the deployed app loads nothing of the local stack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("googleapiclient", "google.auth", "httplib2")


def _loaded_after(code: str) -> list[str]:
    probe = (
        "import sys, json\n"
        f"{code}\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({HEAVY!r}))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"MAILROOM_STAGE": "test", "AWS_DEFAULT_REGION": "us-east-1", "PATH": ""},
    )
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "module",
    [
        "app",
        "chalicelib.handlers.router",
        "chalicelib.handlers.bouncer",
        "chalicelib.handlers.inbound_bridge",
        "chalicelib.handlers.webhooks",
        "chalicelib.handlers.gmail_forwarder",  # even the forwarder: only when it imports
    ],
)
def test_importing_a_function_does_not_load_the_gmail_libraries(module: str) -> None:
    assert _loaded_after(f"import {module}") == []


def test_the_gmail_client_loads_them_only_when_it_talks_to_gmail() -> None:
    loaded = _loaded_after(
        "from chalicelib.providers.gmail.client import GmailClient, OAuthClient, TokenCache\n"
        "import requests\n"
        "s = requests.Session()\n"
        "c = GmailClient('a@b', OAuthClient('i', 's', 'r'), session=s,"
        " tokens=TokenCache('http://x', session=s, timeout=1))\n"
        "c.service()"
    )
    assert "googleapiclient.discovery" in loaded


def test_app_imports_nothing_from_the_local_stack_even_with_its_variable_set() -> None:
    probe = (
        "import sys, app\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mailroom_local'))\n"
    )
    env = {"MAILROOM_STAGE": "test", "AWS_DEFAULT_REGION": "us-east-1", "PATH": ""}
    env["MAILROOM_LOCAL_STACK_FILE"] = "/nonexistent/local.json"

    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, env=env
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


_BUILT_AT_IMPORT = """
import importlib, pkgutil, sys
import pydantic, chalicelib
for found in pkgutil.walk_packages(chalicelib.__path__, "chalicelib."):
    importlib.import_module(found.name)
def every(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from every(sub)
models = {m for m in every(pydantic.BaseModel) if m.__module__.startswith("chalicelib.")}
assert models, "no models found"
print(sorted(m.__qualname__ for m in models if m.__pydantic_complete__))
"""


def test_no_model_builds_its_validator_at_import() -> None:
    env = {"MAILROOM_STAGE": "test", "AWS_DEFAULT_REGION": "us-east-1", "PATH": ""}

    done = subprocess.run(
        [sys.executable, "-c", _BUILT_AT_IMPORT], cwd=ROOT, capture_output=True, text=True, env=env
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
