"""``python -m mailroom_local demo``: post sample emails to a running stack, say where each went."""

from __future__ import annotations

import base64
import copy
import json
import time
from pathlib import Path
from typing import Any

import requests

SAMPLE = Path(__file__).resolve().parent.parent / "tests" / "events" / "postmark_inbound_basic.json"


def _samples() -> list[tuple[str, dict[str, Any]]]:
    base = json.loads(SAMPLE.read_text())
    stamp = str(int(time.time()))
    first = copy.deepcopy(base)
    first["MessageID"] = f"demo-{stamp}-1"
    first["Headers"] = [{"Name": "Message-ID", "Value": f"<demo-{stamp}-1@example.org>"}]
    reply = copy.deepcopy(base)
    reply.update(MessageID=f"demo-{stamp}-2", Subject="Re: " + base["Subject"], Attachments=[])
    reply["Headers"] = [
        {"Name": "Message-ID", "Value": f"<demo-{stamp}-2@example.org>"},
        {"Name": "In-Reply-To", "Value": f"<demo-{stamp}-1@example.org>"},
    ]
    plain = copy.deepcopy(base)
    plain.update(MessageID=f"demo-{stamp}-3", Subject="A question", Attachments=[])
    plain["Headers"] = [{"Name": "Message-ID", "Value": f"<demo-{stamp}-3@example.org>"}]
    samples = [("with attachment", first), ("reply to it", reply), ("plain", plain)]
    for label, email in samples:
        email["HtmlBody"] = f"<p>demo {stamp}: {label}</p>"
    return samples


def run(state_dir: Path) -> int:
    try:
        local = json.loads((state_dir / "local.json").read_text())
    except FileNotFoundError:
        print(f"no local stack found ({state_dir}/local.json); start it with `make run`")
        return 1
    hook = local["webhook"]
    auth = base64.b64encode(f"{hook['username']}:{hook['password']}".encode()).decode()
    freescout = local["freescout"]
    for label, email in _samples():
        answer = requests.post(
            hook["url"],
            json=email,
            headers={"Authorization": f"Basic {auth}"},
            timeout=10,
        )
        print(f"{label:<16} webhook answered {answer.status_code}", flush=True)
        deadline = time.monotonic() + 30
        where = "not delivered yet (see the DLQ: queues.inbound-bridge-dlq in local.json)"
        while time.monotonic() < deadline:
            found = requests.get(f"{freescout['url']}/_control/conversations", timeout=10).json()[
                "conversations"
            ]
            for conversation in found:
                bodies = [t["body"] for t in conversation["_embedded"]["threads"]]
                if any(email["HtmlBody"] == body for body in bodies) and (
                    len(bodies) > 1 or label != "reply to it"
                ):
                    where = f"FreeScout conversation {conversation['id']} ({len(bodies)} thread(s))"
                    break
            else:
                time.sleep(0.5)  # polling a running stack, bounded by the deadline
                continue
            break
        print(f"{'':<16} -> {where}", flush=True)
    return 0
