"""Operator-facing errors: one line each, with the exit code the CLI promises.

click.ClickException
├── ConfigError   exit 2: usage or configuration (no stage, unreadable local.json, AWS refused)
└── Finding       exit 1: the command ran and found something wrong (unhealthy, not found)
"""

from __future__ import annotations

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
