"""The bench stage shared by the scripts: its secrets, and what a script that runs the pipeline
in-process sets before chalicelib is imported (the repository on the import path, AWS pointed
at fake credentials that moto answers)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What ``provision`` stores for the stage; the stand-ins start with the same key ("k") and
# token ("t").
SECRETS = {
    "postmark/webhook-basic-auth": "u:p",
    "freescout/api-key": "k",
    "postmark/server-token": "t",
    "outbound/signing-secret": "s",
}


def in_process(stage: str = "bench", **env: str) -> Path:
    """Prepare the process for ``stage`` (plus ``env``); the repository's root."""
    sys.path.insert(0, str(ROOT))
    os.environ.update(
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        MAILROOM_STAGE=stage,
        **env,
    )
    return ROOT
