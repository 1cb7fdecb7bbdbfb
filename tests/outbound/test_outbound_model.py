"""The outbound request model: errors name the field; the published schema stays in sync."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from pydantic import ValidationError

from chalicelib.mail.outbound import SCHEMA_PATH, OutboundEmail, schema_text


def _request(**overrides: Any) -> dict[str, Any]:
    base = {
        "correlation_id": "order-42:receipt",
        "from": "Shop <shop@example.com>",
        "to": "a@example.org, b@example.org",
        "subject": "Your receipt",
        "text_body": "Thanks",
    }
    base.update(overrides)
    return base


def test_comma_separated_recipients_become_lists() -> None:
    email = OutboundEmail.model_validate(_request(cc=["c@example.org"]))
    assert email.recipients == ["a@example.org", "b@example.org", "c@example.org"]
    assert email.from_ == "Shop <shop@example.com>"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"correlation_id": "has spaces"}, "correlation_id"),
        ({"to": ["not-an-address"]}, "to"),
        ({"colour": "red"}, "colour"),
        ({"track_links": "Sometimes"}, "track_links"),
    ],
)
def test_errors_name_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        OutboundEmail.model_validate(_request(**overrides))
    assert field in {str(e["loc"][0]) for e in caught.value.errors()}


def test_more_than_fifty_recipients_is_rejected() -> None:
    many = [f"r{i}@example.org" for i in range(51)]
    with pytest.raises(ValidationError, match="50 recipients"):
        OutboundEmail.model_validate(_request(to=many))


def test_a_body_is_required() -> None:
    with pytest.raises(ValidationError, match="text_body or html_body"):
        OutboundEmail.model_validate(_request(text_body=None))


def test_committed_schema_matches_the_model() -> None:
    assert SCHEMA_PATH.read_text() == schema_text(), (
        "run `python -m chalicelib.mail.outbound` to regenerate schemas/outbound.json"
    )


def test_the_schema_refuses_reserved_custom_headers_in_any_case() -> None:
    names = json.loads(SCHEMA_PATH.read_text())["properties"]["headers"]["propertyNames"]
    reserved = re.compile(names["not"]["pattern"])

    assert all(reserved.match(n) for n in ["bcc", "BCC", "Reply-To", "message-ID", "tO"])
    assert not any(reserved.match(n) for n in ["X-Order", "In-Reply-To", "Bccx", "References"])
