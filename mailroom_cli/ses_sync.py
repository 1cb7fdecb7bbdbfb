"""The stage's SES account-level suppression list for the CLI: SES in AWS, or the local
SES stand-in (moto 5.2.5 has no PutSuppressedDestination)."""

from __future__ import annotations

import json
from typing import Any

from chalicelib.providers.ses.suppression import SesSuppressionList
from mailroom_cli.context import Context


def ses_suppressions(ctx: Context) -> SesSuppressionList:
    if not ctx.target.local or ctx.target.state_dir is None:
        return SesSuppressionList(ctx.client("sesv2"))
    import boto3

    local: dict[str, Any] = json.loads((ctx.target.state_dir / "local.json").read_text())
    client = boto3.client(
        "sesv2",
        endpoint_url=local["ses"]["url"],
        region_name=ctx.target.region,
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 - the stand-in's placeholder
    )
    return SesSuppressionList(client)
