"""SES sending fixtures: the outbound ones, plus a stage whose SES (moto) may send."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest

from chalicelib.platform.aws import reset_clients
from tests.cli.conftest import mailroom  # noqa: F401 - shared fixtures
from tests.conftest import REGION, Stage
from tests.outbound.conftest import client, event, sender, standin  # noqa: F401 - shared fixtures

SHOP = "shop@example.com"


@pytest.fixture
def ses(aws: Stage, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto's SESv2 with the sender verified (the template made the configuration set)."""
    sesv2 = boto3.client("sesv2", region_name=REGION)
    sesv2.create_email_identity(EmailIdentity=SHOP)
    boto3.client("ses", region_name=REGION).verify_email_identity(EmailAddress=SHOP)
    reset_clients()
    return


def sent_through_ses() -> int:
    """How many messages moto's SES accepted (its quota counts recipients, not messages)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    return len(ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages)
