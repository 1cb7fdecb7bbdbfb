"""The verdict policy as a table: what the receiving MTA's verdicts do to a routing decision.

Rows are read top to bottom and the first whose condition holds and whose route actions
include the rule's action decides; no row matching means "deliver as routed". Anything but
PASS (FAIL, GRAY, PROCESSING_FAILED, DISABLED, missing) is "not PASS". The README prints
``POLICY`` (``python -m chalicelib.mail.verdicts``) so the documentation is this table.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, field_validator

from chalicelib.mail.routing import RouteAction
from chalicelib.platform.payload import Model, OpenEnum


class Verdict(OpenEnum):
    PASS = "PASS"  # noqa: S105 - a verdict, not a password
    FAIL = "FAIL"
    GRAY = "GRAY"
    PROCESSING_FAILED = "PROCESSING_FAILED"
    UNKNOWN = "UNKNOWN"


class DmarcPolicy(OpenEnum):
    NONE = "none"
    QUARANTINE = "quarantine"
    REJECT = "reject"
    UNKNOWN = "unknown"


def _status(value: Any) -> Verdict:
    """``{"status": "PASS"}`` (SES's shape), a bare string, or nothing."""
    if isinstance(value, dict):
        value = value.get("status")
    return Verdict(value) if isinstance(value, str) else Verdict.UNKNOWN


class Verdicts(Model):
    """The receiving MTA's authentication and content verdicts, as the policy reads them."""

    model_config = ConfigDict(frozen=True)

    spam: Verdict = Verdict.UNKNOWN
    virus: Verdict = Verdict.UNKNOWN
    spf: Verdict = Verdict.UNKNOWN
    dkim: Verdict = Verdict.UNKNOWN
    dmarc: Verdict = Verdict.UNKNOWN
    dmarc_policy: DmarcPolicy = DmarcPolicy.UNKNOWN

    @field_validator("spam", "virus", "spf", "dkim", "dmarc", mode="before")
    @classmethod
    def _verdict(cls, value: Any) -> Verdict:
        return _status(value)

    @field_validator("dmarc_policy", mode="before")
    @classmethod
    def _policy(cls, value: Any) -> DmarcPolicy:
        return DmarcPolicy(value) if isinstance(value, str) else DmarcPolicy.UNKNOWN

    def as_strings(self) -> dict[str, str]:
        """Flat string map, for queue messages and audit records."""
        return {name: str(value) for name, value in self.model_dump().items()}


class Disposition(StrEnum):
    DELIVER = "deliver"  # the routed action, unchanged
    SPAM_LABEL = "spam_label"  # gmail: import with the rule's spam label
    DROP = "drop"  # nothing is delivered; an audit record says why
    REFUSE_BOUNCE = "refuse_bounce"  # a bounce would be backscatter: drop, audited


ALL_ACTIONS = frozenset(RouteAction) - {RouteAction.UNKNOWN}


@dataclass(frozen=True)
class Row:
    condition: str
    applies: Callable[[Verdicts], bool]
    actions: frozenset[RouteAction]
    disposition: Disposition
    reason: str
    needs_spam_label: bool = False


def _not_pass(verdict: Verdict) -> bool:
    return verdict is not Verdict.PASS


POLICY: tuple[Row, ...] = (
    Row(
        "virus FAIL",
        lambda v: v.virus is Verdict.FAIL,
        ALL_ACTIONS,
        Disposition.DROP,
        "virus detected",
    ),
    Row(
        "spam FAIL, gmail route with a spam label",
        lambda v: v.spam is Verdict.FAIL,
        frozenset({RouteAction.GMAIL}),
        Disposition.SPAM_LABEL,
        "spam: imported with the rule's spam label",
        needs_spam_label=True,
    ),
    Row("spam FAIL", lambda v: v.spam is Verdict.FAIL, ALL_ACTIONS, Disposition.DROP, "spam"),
    Row(
        "DMARC FAIL with policy reject or quarantine",
        lambda v: (
            v.dmarc is Verdict.FAIL
            and v.dmarc_policy in {DmarcPolicy.REJECT, DmarcPolicy.QUARANTINE}
        ),
        ALL_ACTIONS,
        Disposition.DROP,
        "DMARC failed and the sender's policy says reject or quarantine",
    ),
    Row(
        "SPF and DKIM both not PASS",
        lambda v: _not_pass(v.spf) and _not_pass(v.dkim),
        frozenset({RouteAction.BOUNCE}),
        Disposition.REFUSE_BOUNCE,
        "not bounced: sender not authenticated",
    ),
)


@dataclass(frozen=True)
class Decision:
    disposition: Disposition
    reason: str
    condition: str = ""


def decide(action: RouteAction, verdicts: Verdicts, *, has_spam_label: bool = False) -> Decision:
    """The first matching row's disposition for ``action``, or deliver."""
    if action is RouteAction.DROP:
        return Decision(Disposition.DROP, "routing rule drops this recipient", "route action drop")
    for row in POLICY:
        if action not in row.actions or (row.needs_spam_label and not has_spam_label):
            continue
        if row.applies(verdicts):
            return Decision(row.disposition, row.reason, row.condition)
    return Decision(Disposition.DELIVER, "delivered as routed")


def markdown_table() -> str:
    """The table as the README shows it."""
    lines = ["| # | verdicts | route actions | outcome |", "| --- | --- | --- | --- |"]
    for number, row in enumerate(POLICY, start=1):
        actions = "all" if row.actions == ALL_ACTIONS else ", ".join(sorted(row.actions))
        lines.append(f"| {number} | {row.condition} | {actions} | {row.reason} |")
    lines.append(f"| {len(POLICY) + 1} | anything else | all | delivered as routed |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(markdown_table() + "\n")
