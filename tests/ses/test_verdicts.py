"""The verdict table over every combination of verdicts, DMARC policy and route action."""

from __future__ import annotations

import itertools

import pytest

from chalicelib.mail.routing import RouteAction
from chalicelib.mail.verdicts import (
    POLICY,
    Disposition,
    DmarcPolicy,
    Verdict,
    Verdicts,
    decide,
    markdown_table,
)
from chalicelib.providers.ses.receipt import SesNotification, receipt_verdicts

STATUSES = list(Verdict)
ACTIONS = [a for a in RouteAction if a is not RouteAction.UNKNOWN]


def _expected(action: RouteAction, v: Verdicts, spam_label: bool) -> Disposition:
    """The policy restated plainly, independent of the table's encoding."""
    if action is RouteAction.DROP or v.virus == "FAIL":
        return Disposition.DROP
    if v.spam == "FAIL":
        return (
            Disposition.SPAM_LABEL
            if action is RouteAction.GMAIL and spam_label
            else Disposition.DROP
        )
    if v.dmarc == "FAIL" and v.dmarc_policy in ("reject", "quarantine"):
        return Disposition.DROP
    if action is RouteAction.BOUNCE and v.spf != "PASS" and v.dkim != "PASS":
        return Disposition.REFUSE_BOUNCE
    return Disposition.DELIVER


def test_every_combination_of_verdicts_gets_the_documented_disposition() -> None:
    checked = 0
    for spam, virus, spf, dkim, dmarc in itertools.product(STATUSES, repeat=5):
        for policy in DmarcPolicy:
            verdicts = Verdicts(
                spam=spam, virus=virus, spf=spf, dkim=dkim, dmarc=dmarc, dmarc_policy=policy
            )
            for action in ACTIONS:
                for label in (False, True):
                    got = decide(action, verdicts, has_spam_label=label).disposition
                    assert got is _expected(action, verdicts, label), (action, verdicts, label)
                    checked += 1
    assert checked == len(STATUSES) ** 5 * len(DmarcPolicy) * len(ACTIONS) * 2


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"status": "PASS"}, Verdict.PASS),
        ({"status": "GRAY"}, Verdict.GRAY),
        ({"status": "PROCESSING_FAILED"}, Verdict.PROCESSING_FAILED),
        ({"status": "DISABLED"}, Verdict.UNKNOWN),
        ({"status": "something-new"}, Verdict.UNKNOWN),
        ({}, Verdict.UNKNOWN),
        (None, Verdict.UNKNOWN),
        ("fail", Verdict.FAIL),
    ],
)
def test_unknown_and_missing_verdict_values_are_unknown_never_an_error(
    raw: object, expected: Verdict
) -> None:
    assert receipt_verdicts({"spfVerdict": raw}).spf is expected


def test_a_notification_without_verdict_fields_parses_as_all_unknown() -> None:
    note = SesNotification.parse(
        '{"notificationType": "Received", "mail": {"messageId": "abc", "headersTruncated": true},'
        ' "receipt": {"timestamp": "2026-11-22T10:00:00.000Z", "recipients": ["a@b.example"]}}'
    )
    assert set(note.verdicts.as_strings().values()) == {"UNKNOWN", "unknown"}
    assert note.mail.headers_truncated is True
    assert note.rfc_message_id is None


def test_the_readme_table_lists_every_row() -> None:
    table = markdown_table()
    assert "SPF and DKIM both not PASS" in table
    assert table.count("\n| ") == len(POLICY) + 2  # separator, the rows, the fallback
