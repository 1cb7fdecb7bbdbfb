"""The README's configuration reference names every variable settings.py reads."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_documents_every_environment_variable() -> None:
    source = (ROOT / "chalicelib" / "platform" / "settings.py").read_text()
    readme = (ROOT / "README.md").read_text()
    variables = set(re.findall(r'"((?:MAILROOM|AWS)_[A-Z_]+)"', source))
    assert variables, "settings.py names no variables"
    missing = sorted(v for v in variables if f"`{v}`" not in readme)
    assert missing == []


def test_readme_names_the_two_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "`make test`" in readme
    assert "`make run`" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.MULTILINE)
