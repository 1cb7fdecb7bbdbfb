"""`make probe` against the running local stack: both probes pass end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def test_make_probe_passes_both_probes_against_the_local_stack(stack: dict[str, Any]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mailroom_local", "probe", "--state-dir", stack["state_dir"]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "inbound  passed" in done.stdout
    assert "outbound passed" in done.stdout
