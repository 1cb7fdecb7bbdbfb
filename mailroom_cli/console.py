"""What the operator sees: one-line errors with their exit code, tables, and JSON.

    click.ClickException
    ├── ConfigError   exit 2: usage or configuration (no stage, unreadable local.json, AWS refused)
    └── Finding       exit 1: the command ran and found something wrong (unhealthy, not found)

Human tables by default, JSON for scripts (``--json``), from the same rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import click

EXIT_OK = 0
EXIT_FINDING = 1
EXIT_CONFIG = 2


class ConfigError(click.ClickException):
    """A usage or configuration problem; nothing was changed."""

    exit_code = EXIT_CONFIG


class Finding(click.ClickException):
    """The command ran and found something the operator must act on."""

    exit_code = EXIT_FINDING


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """``rows`` as a left-aligned text table with ``columns`` as the header."""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def emit(
    as_json: bool,
    data: Any,
    *,
    rows: Sequence[Mapping[str, Any]] | None = None,
    columns: Sequence[str] | None = None,
    empty: str = "(none)",
) -> None:
    """Print ``data`` as JSON, or ``rows`` (``data`` itself unless given) as a table of
    ``columns`` (``empty`` when there are none); without ``columns``, nothing for humans."""
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))
        return
    if columns is None:
        return
    shown = data if rows is None else rows
    click.echo(table(shown, columns) if shown else empty)


def say(as_json: bool, message: str) -> None:
    """A human line (not printed under ``--json``, whose output must stay parseable)."""
    if not as_json:
        click.echo(message)
