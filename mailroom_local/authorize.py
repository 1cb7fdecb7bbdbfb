"""``python -m mailroom_local authorize-gmail MAILBOX``: authorize another Gmail mailbox on the
running local stack, as ``python -m infra.gmail_auth`` does for a stage in AWS.

Stores the Gmail stand-in's OAuth client for MAILBOX in the embedded SSM under the name the
forwarder reads (``/mailroom/local/gmail/<local>_at_<domain>``); the stand-in keeps a
mailbox for every user it is given. ``--label NAME`` (repeatable) also gives the mailbox a
user label of that name (kept if it has one) and prints its id, as Gmail's label list would.
Then ``mailroom --local routes add ADDRESS --action gmail --target
'MAILBOX;labels=INBOX,Label_1'`` routes mail there.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

from chalicelib.providers.gmail.client import parameter_name
from mailroom_local.attach import stack_client

CLIENT_FIELDS = ("client_id", "client_secret", "refresh_token")


def authorize(state_dir: Path, mailbox: str, labels: Sequence[str] = ()) -> int:
    """Store MAILBOX's authorization and give it ``labels``; 0, or 1 with one error line."""
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
    if labels:
        try:
            created = ensure_labels(local["gmail"], mailbox, labels)
        except requests.RequestException as err:
            print(f"error: the Gmail stand-in did not create the labels ({err})")
            return 1
        for label_name, label_id in created.items():
            print(f"label {label_id}  {label_name}")
    return 0


def ensure_labels(gmail: dict[str, Any], mailbox: str, names: Sequence[str]) -> dict[str, str]:
    """Label name → id in MAILBOX of the Gmail stand-in ``gmail`` (``local.json``'s entry),
    each created unless the mailbox has a label of that name already."""
    session = requests.Session()
    form = {"grant_type": "refresh_token", **{f: gmail[f] for f in CLIENT_FIELDS}}
    token = session.post(gmail["token_url"], data=form, timeout=10)
    token.raise_for_status()
    session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    url = f"{gmail['url']}/gmail/v1/users/{mailbox}/labels"
    listed = session.get(url, timeout=10)
    listed.raise_for_status()
    have = {str(x["name"]).lower(): str(x["id"]) for x in listed.json().get("labels") or []}
    found: dict[str, str] = {}
    for name in names:
        if name.lower() not in have:
            created = session.post(url, json={"name": name}, timeout=10)
            created.raise_for_status()
            have[name.lower()] = str(created.json()["id"])
        found[name] = have[name.lower()]
    return found
