"""``python -m mailroom_local probe`` (``make probe``): both end-to-end probes against the
running local stack, on demand, printing each stage's time; exit 1 if one fails.

Runs ``chalicelib.handlers.probe.checks`` itself, configured from ``.mailroom/local.json``:
the inbound probe goes through the stack's webhook (credentials from the embedded SSM) to the
FreeScout stand-in, the outbound one through the outbound topic and sender to the Postmark stand-in.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

PROBE_ADDRESS = "probe@mailroom.local"
PROBE_FROM = "probe-sender@mailroom.local"


def environment(local: dict[str, Any], timeout: int) -> dict[str, str]:
    """The variables chalicelib's settings read, pointed at the local stack."""
    return {
        "MAILROOM_STAGE": "local",
        "AWS_REGION": str(local["region"]),
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "MAILROOM_AWS_ENDPOINT_URL": str(local["aws_endpoint_url"]),
        "MAILROOM_FREESCOUT_URL": str(local["freescout"]["url"]),
        "MAILROOM_INBOUND_TOPIC_ARN": str(local["topics"]["inbound"]),
        "MAILROOM_OUTBOUND_TOPIC_ARN": str(local["topics"]["outbound"]),
        "MAILROOM_STATE_TABLE": str(local["tables"]["state"]),
        "MAILROOM_ROUTES_TABLE": str(local["tables"]["routes"]),
        "MAILROOM_MAIL_BUCKET": str(local["bucket"]),
        "MAILROOM_LOG_LEVEL": "WARNING",  # this prints its own lines
        "MAILROOM_PROBE_ENABLED": "true",
        "MAILROOM_PROBE_ADDRESS": PROBE_ADDRESS,
        "MAILROOM_PROBE_FROM": PROBE_FROM,
        "MAILROOM_PROBE_WEBHOOK_URL": str(local["webhook"]["url"]),
        "MAILROOM_PROBE_TIMEOUT_SECONDS": str(max(timeout, 60)),
    }


def run(state_dir: Path, *, timeout: float = 60.0) -> int:
    """Send both probes, wait until each is settled or ``timeout`` passes; 0 if both passed."""
    try:
        local = json.loads((state_dir / "local.json").read_text())
    except FileNotFoundError:
        print(f"no local stack found ({state_dir}/local.json); start it with `make run`")
        return 1
    os.environ.update(environment(local, int(timeout)))
    if local.get("credentials"):  # what the scheduled probe function does, with its policy
        from mailroom_local import iam

        os.environ.update(iam.install_from_local(local, "probe"))
    from chalicelib.handlers.probe import checks as probe
    from chalicelib.platform.aws import reset_clients
    from chalicelib.platform.secrets import reset_secrets
    from chalicelib.platform.settings import get_settings

    reset_clients()
    reset_secrets()
    ok = probe.run_on_demand(get_settings(), timeout=timeout, report=print)
    print("probe passed" if ok else "probe FAILED")
    return 0 if ok else 1
