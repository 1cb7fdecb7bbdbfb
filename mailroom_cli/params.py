"""The CLI's argument types: an address, a message id, a rate, a duration, a pipeline name.

Every command takes its values through these, so a malformed one is refused before anything
runs, as one line with exit code 2 (click's usage error).
"""

from __future__ import annotations

import math
import re
from typing import Any

import click

from mailroom_cli.pipelines import BY_NAME

# One @, a dot in the domain, no whitespace, brackets or list separators: what a recipient
# field holds once its display name is gone.
_ADDRESS = re.compile(
    r"^[^@\s<>,;:\"()\[\]\\]+@[^@\s<>,;:\"()\[\]\\.]+(\.[^@\s<>,;:\"()\[\]\\.]+)+$"
)
MAX_ADDRESS = 254  # RFC 5321's limit for a path
MAX_ID = 512


class Address(click.ParamType[str]):
    """An email address (``user@example.com``, or ``Ann <user@example.com>``: the address is
    taken), trimmed and lower-cased."""

    name = "address"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        if text.endswith(">") and text.count("<") == 1:
            text = text[text.index("<") + 1 : -1].strip()
        if len(text) > MAX_ADDRESS or not _ADDRESS.match(text):
            self.fail(f"{value!r} is not an email address (user@example.com)", param, ctx)
        return text.lower()


class MessageId(click.ParamType[str]):
    """An SQS message id or a business id: printable, no whitespace, at most 512 characters."""

    name = "id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        if (
            not text
            or len(text) > MAX_ID
            or not text.isprintable()
            or any(c.isspace() for c in text)
        ):
            self.fail(
                f"{value!r} is not a message id (an SQS message id, Postmark MessageID, "
                "correlation id, RFC Message-ID or SES message id)",
                param,
                ctx,
            )
        return text


class Positive(click.ParamType[float]):
    """A finite number within ``[low, high]`` (``nan`` and ``inf`` refused)."""

    def __init__(self, name: str, low: float, high: float, unit: str) -> None:
        self.name = name
        self.low, self.high, self.unit = low, high, unit

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number) or not self.low <= number <= self.high:
            self.fail(
                f"{value!r} is not a {self.name} ({self.low:g} to {self.high:g} {self.unit})",
                param,
                ctx,
            )
        return number


class PipelineName(click.ParamType[str]):
    """One of the pipelines in ``mailroom_cli.pipelines`` (or ``all`` where allowed)."""

    name = "pipeline"

    def __init__(self, *, allow_all: bool = True) -> None:
        self.allow_all = allow_all

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        known = [*BY_NAME, *(["all"] if self.allow_all else [])]
        if text not in known:
            self.fail(f"unknown pipeline {text!r} (known: {', '.join(known)})", param, ctx)
        return text


ADDRESS = Address()
MESSAGE_ID = MessageId()
PIPELINE = PipelineName()
RATE = Positive("rate", 0.1, 1000, "messages per second")
SECONDS = Positive("duration", 1, 3600, "seconds")
HOURS = Positive("duration", 0.01, 24 * 400, "hours")
