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

from chalicelib.mail.routing import RouteAction
from chalicelib.providers.ses.receipt import DmarcPolicy, Verdict, Verdicts


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
