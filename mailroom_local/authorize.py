"""``python -m mailroom_local authorize-gmail MAILBOX``: authorize another Gmail mailbox on the
running local stack, as ``python -m infra.gmail_auth`` does for a stage in AWS.

Stores the Gmail stand-in's OAuth client for MAILBOX in the embedded SSM under the name the
forwarder reads (``/mailroom/local/gmail/<local>_at_<domain>``); the stand-in keeps a
mailbox for every user it is given. Then ``mailroom --local routes add ADDRESS --action gmail
--target MAILBOX`` routes mail there.
"""

from __future__ import annotations

import json
from pathlib import Path

from chalicelib.providers.gmail.client import parameter_name
from mailroom_local.attach import stack_client

CLIENT_FIELDS = ("client_id", "client_secret", "refresh_token")


def authorize(state_dir: Path, mailbox: str) -> int:
    """Store MAILBOX's authorization; 0, or 1 with one error line."""
    if "@" not in mailbox or mailbox.strip() != mailbox or len(mailbox) > 254:
        print(f"error: {mailbox!r} is not a mailbox address")
        return 1
    try:
        local = json.loads((state_dir / "local.json").read_text())
    except FileNotFoundError:
        print(f"no local stack found ({state_dir}/local.json); start it with `make run`")
        return 1
    name = f"/mailroom/{local.get('stage', 'local')}/{parameter_name(mailbox)}"
    client = {field: local["gmail"][field] for field in CLIENT_FIELDS}
    stack_client(local, "ssm").put_parameter(
        Name=name, Value=json.dumps(client), Type="SecureString", Overwrite=True
    )
    print(f"authorized {mailbox} on the local stack ({name})")
    return 0
