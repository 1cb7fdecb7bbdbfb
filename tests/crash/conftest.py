"""Collects the crash harness's reports and prints their table at the end of the session."""

from __future__ import annotations

from typing import Any

from tests.crash.verdicts import Report, table

REPORTS: list[Report] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORTS:
        terminalreporter.section("crash at every side-effect boundary")
        terminalreporter.line(table(REPORTS))
