"""``mailroom probe``: send a probe email through the real inbound path (the public webhook
with its credentials) and one through the outbound pipeline, and wait until each arrives
(its FreeScout conversation; Postmark's ``sent``), printing each stage's time.

On the local stack everything comes from ``local.json``. For a stage in AWS, the probe's
settings come from the environment as the probe function's do (``MAILROOM_PROBE_WEBHOOK_URL``,
``MAILROOM_PROBE_ADDRESS``, ``MAILROOM_PROBE_FROM``, ``MAILROOM_FREESCOUT_URL``,
``MAILROOM_OUTBOUND_TOPIC_ARN``); a missing one is named.
"""

from __future__ import annotations

import json
import os

import click

from mailroom_cli.console import ConfigError, Finding, say
from mailroom_cli.context import Context
from mailroom_cli.params import SECONDS


@click.command()
@click.option(
    "--timeout", default=120.0, show_default=True, type=SECONDS, help="Seconds to wait for arrival."
)
@click.pass_obj
def probe(ctx: Context, timeout: float) -> None:
    """Send both end-to-end probes now and wait for them; exit 1 if one fails."""
    if ctx.target.local and ctx.target.state_dir is not None:
        from mailroom_local.probe import environment

        local = json.loads((ctx.target.state_dir / "local.json").read_text())
        os.environ.update(environment(local, int(timeout)))
        if local.get("credentials"):  # run by the operator, with the operator's policy
            from mailroom_local import iam

            os.environ.update(iam.install_from_local(local, iam.OPERATOR))
    else:
        os.environ.update({"MAILROOM_STAGE": ctx.stage, "AWS_REGION": ctx.target.region})
    from chalicelib.handlers.probe import checks as probes
    from chalicelib.platform.aws import reset_clients
    from chalicelib.platform.secrets import reset_secrets
    from chalicelib.platform.settings import get_settings

    reset_clients()
    reset_secrets()
    try:
        ok = probes.run_on_demand(
            get_settings(), timeout=timeout, report=lambda line: say(ctx.as_json, line)
        )
    except probes.ProbeNotConfigured as err:
        raise ConfigError(str(err)) from None
    if not ok:
        raise Finding("probe FAILED")
    say(ctx.as_json, "probe passed")
