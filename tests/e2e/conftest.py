"""The local stack, started once per test session as a user would (``python -m mailroom_local
run``), and helpers to wait on it and reach its embedded AWS."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mailroom_local.attach import stack_client
from mailroom_local.stack import spawn


def until(check: Callable[[], Any], *, seconds: float = 30) -> Any:
    """Poll ``check`` until it returns something truthy, or fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)  # polling another process, bounded by the deadline
    raise AssertionError(f"condition not met within {seconds} s")


@contextlib.contextmanager
def started_stack(state: Path) -> Iterator[dict[str, Any]]:
    """A local stack started in ``state`` as a user would, stopped after the block."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAILROOM_"))}
    process = spawn(state, env=env)
    try:
        local_json = state / "local.json"
        until(lambda: local_json.exists() or process.poll() is not None, seconds=90)
        assert process.poll() is None, "the local stack exited during start-up"
        local = json.loads(local_json.read_text())
        local["state_dir"] = str(state)
        yield local
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The shared stack: the permission test judges the calls made on it."""
    with started_stack(tmp_path_factory.mktemp("stack")) as local:
        yield local


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A stack of the module's own, for a long test of flows the shared stack's tests already
    take through every function: it may run in another worker beside them."""
    with started_stack(tmp_path_factory.mktemp("own-stack")) as local:
        yield local


@pytest.fixture(autouse=True)
def _nobody_acts_as_the_operator_afterwards() -> Iterator[None]:
    """An in-process ``mailroom --local`` signs as the operator (keys in the environment, a
    session hook recording its calls) for the rest of the process. Undo it after each test,
    so later tests neither sign as the operator nor land in the permission test's record."""
    saved = dict(os.environ)
    yield
    from mailroom_local import iam

    iam.uninstall()
    os.environ.clear()
    os.environ.update(saved)


def aws_client(stack: dict[str, Any], service: str = "sqs") -> Any:
    return stack_client(stack, service)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The permission test judges the calls every other test made: it runs last (under
    pytest-xdist, ``tests/conftest.py`` keeps every end-to-end test in one worker)."""
    items.sort(key=lambda item: item.module.__name__.endswith("test_permissions"))
