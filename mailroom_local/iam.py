"""Each function of the local stack signs its AWS calls as its own IAM user with the policy it
is deployed with (``infra.policies``), and every call it makes is written down for the
permission test (``tests/e2e/test_permissions.py``).

The embedded AWS refuses what a policy does not allow (``moto_iam``); the record catches what
it does not check (the SES stand-in, conditions). Several functions share the pump's process,
so the credentials a call is signed with are the current thread's function's.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from infra import policies
from mailroom_local.iam_calls import targets
from mailroom_local.moto_iam import ADMIN_KEY

OPERATOR = "operator"
PRINCIPALS = (*policies.FUNCTIONS, OPERATOR)
CALLS_FILE = "calls.jsonl"
# Read by processes the stack starts (the API) and by tools that act as a function.
CALLS_VARIABLE = "MAILROOM_LOCAL_CALLS_FILE"
FUNCTION_VARIABLE = "MAILROOM_LOCAL_FUNCTION"

_current = threading.local()


def policy_of(stage: str, principal: str) -> dict[str, Any]:
    if principal == OPERATOR:
        return policies.operator_policy(stage)
    return policies.policy(stage, principal)


def create_principals(iam: Any, stage: str) -> dict[str, dict[str, str]]:
    """One IAM user per function and one for the operator, with its policy; their keys."""
    keys: dict[str, dict[str, str]] = {}
    for principal in PRINCIPALS:
        user = f"mailroom-{stage}-{principal}"
        iam.create_user(UserName=user)
        iam.put_user_policy(
            UserName=user,
            PolicyName=f"{user}-policy",
            PolicyDocument=json.dumps(policy_of(stage, principal)),
        )
        key = iam.create_access_key(UserName=user)["AccessKey"]
        keys[principal] = {
            "aws_access_key_id": key["AccessKeyId"],
            "aws_secret_access_key": key["SecretAccessKey"],
        }
    return keys


def current_function() -> str | None:
    return getattr(_current, "function", None) or _Process.function


@contextmanager
def acting_as(function: str) -> Iterator[None]:
    """Calls made on this thread meanwhile are ``function``'s: signed with its keys, recorded."""
    previous = getattr(_current, "function", None)
    _current.function = function
    try:
        yield
    finally:
        _current.function = previous


class _Process:
    """What this process is (one function's, or several functions' threads) and its record."""

    function: str | None = None
    keys: dict[str, dict[str, str]] = {}
    calls: Path | None = None
    region: str = "us-east-1"
    seen: set[str] = set()
    lock = threading.Lock()


def _credentials() -> Any:
    from botocore.credentials import Credentials

    class PerFunction(Credentials):  # type: ignore[misc]
        """Reads the current thread's function's keys at each signature."""

        def __init__(self) -> None:
            super().__init__(ADMIN_KEY, ADMIN_KEY, method="mailroom-local")

        def _pair(self) -> tuple[str, str]:
            keys = _Process.keys.get(current_function() or "")
            if keys is None:
                return ADMIN_KEY, ADMIN_KEY  # the stack itself, playing AWS
            return keys["aws_access_key_id"], keys["aws_secret_access_key"]

        @property
        def access_key(self) -> str:
            return self._pair()[0]

        @access_key.setter
        def access_key(self, value: str) -> None:
            pass

        @property
        def secret_key(self) -> str:
            return self._pair()[1]

        @secret_key.setter
        def secret_key(self, value: str) -> None:
            pass

        def get_frozen_credentials(self) -> Any:
            from botocore.credentials import ReadOnlyCredentials

            access, secret = self._pair()
            return ReadOnlyCredentials(access, secret, None)

    return PerFunction()


def _record(params: Mapping[str, Any], model: Any, **_: Any) -> None:
    function = current_function()
    if function is None or _Process.calls is None:
        return
    service = model.service_model.signing_name
    for target in targets(service, model.name, params, _Process.region):
        line = json.dumps(
            {
                "function": function,
                "action": target.action,
                "resource": target.resource,
                "context": dict(target.context),
            },
            sort_keys=True,
        )
        with _Process.lock:
            if line in _Process.seen:
                continue
            _Process.seen.add(line)
            with _Process.calls.open("a") as out:
                out.write(line + "\n")


def prepare(session: Any) -> None:
    """Sign ``session``'s calls as the current function and record them (a session hook)."""
    from botocore.credentials import CredentialProvider

    credentials = _credentials()

    class Provider(CredentialProvider):  # type: ignore[misc]
        METHOD = "mailroom-local"

        def load(self) -> Any:
            return credentials

    botocore_session = getattr(session, "_session", session)
    botocore_session.get_component("credential_provider").insert_before("env", Provider())
    botocore_session.register("before-parameter-build", _record)


def install(
    keys: Mapping[str, Mapping[str, str]],
    calls: Path | None,
    *,
    function: str | None = None,
    region: str = "us-east-1",
) -> None:
    """Every boto3 Session chalicelib makes in this process from now on is ``prepare``d;
    ``function`` is the process's own (the API's, the probe's), else each thread says."""
    from chalicelib.platform import aws

    _Process.keys = {name: dict(pair) for name, pair in keys.items()}
    _Process.calls, _Process.function, _Process.region = calls, function, region
    if prepare not in aws.SESSION_HOOKS:
        aws.SESSION_HOOKS.append(prepare)
        aws.reset_clients()


def uninstall() -> None:
    """Undo ``install``: chalicelib's sessions sign with the environment's keys again."""
    from chalicelib.platform import aws

    if prepare in aws.SESSION_HOOKS:
        aws.SESSION_HOOKS.remove(prepare)
    _Process.keys, _Process.calls, _Process.function = {}, None, None
    _Process.seen = set()
    aws.reset_clients()


def install_from_local(local: Mapping[str, Any], function: str) -> dict[str, str]:
    """Act as ``function`` of a running stack (``local.json``); its keys, for the environment."""
    pair = dict(local["credentials"][function])
    calls = local.get("calls_file")
    install({function: pair}, Path(calls) if calls else None, function=function)
    return {
        "AWS_ACCESS_KEY_ID": pair["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": pair["aws_secret_access_key"],
    }


def read_calls(path: Path) -> list[dict[str, Any]]:
    """The recorded calls, one per distinct (function, action, resource, context)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
