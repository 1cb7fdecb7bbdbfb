"""Real-world mail through the local stack: every message of a corpus (default: CPython's
email test corpus, 48 messages) received as SES would for a FreeScout and a Gmail route at
once, then each traced by its SES id and, where it has one, by its Message-ID. Prints one line
per message (what trace answers) and the counts; exit 1 if any message was refused, is not
settled (delivered to both, or dead-lettered with a reason) or is not found by an id.

    .venv/bin/python bench/corpus.py [--folder DIR] [--state-dir .mailroom]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from click.testing import CliRunner

from mailroom_cli.main import cli
from mailroom_local.corpus import (
    CORPUS,
    corpus_files,
    message_id,
    receive_all,
    wait_settled,
)
from mailroom_local.demo import SES_DOMAIN, _seed_ses_routes
from mailroom_local.stack import attached

RECIPIENTS = (f"support@{SES_DOMAIN}", f"gmail-demo@{SES_DOMAIN}")


def trace(local: dict[str, object], ident: str) -> dict[str, object] | None:
    args = ["--local", "--state-dir", str(local["state_dir"]), "--json", "trace", ident]
    result = CliRunner().invoke(cli, args)
    return dict(json.loads(result.stdout)) if result.exit_code == 0 else None


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/corpus.py")
    parser.add_argument("--folder", type=Path, default=CORPUS)
    parser.add_argument("--state-dir", type=Path, help="a running stack's (default: start one)")
    args = parser.parse_args()
    files = corpus_files(args.folder)
    if not files:
        print(f"no messages in {args.folder}")
        return 2
    with attached(args.state_dir, prefix="mailroom-corpus-") as local:
        state_dir = Path(local["state_dir"])
        _seed_ses_routes(local)
        started = time.monotonic()
        try:
            ses_ids = receive_all(state_dir, files, RECIPIENTS)
        except ValueError as err:
            print(f"refused: {err}")
            return 1
        settled = wait_settled(local, seconds=300)
        print(
            f"{len(ses_ids)} messages received; queues empty after "
            f"{time.monotonic() - started:.1f} s: {settled}"
        )
        failures = 0
        by_rfc_id = 0
        for eml in files:
            report = trace(local, ses_ids[eml.name])
            answers = (report or {}).get("answers", {})
            provider = str(answers.get("did the provider accept it", "no trace"))
            dead = list((report or {}).get("dead_letters", []))
            ok = all(a in provider for a in ("freescout", "gmail")) or (
                dead and all(d.get("reason") for d in dead)
            )
            rfc_id = message_id(eml)
            found = None
            if rfc_id is not None:
                found = ses_ids[eml.name] in json.dumps(trace(local, rfc_id))
                by_rfc_id += bool(found)
            failures += (not ok) + (found is False)
            shown = (
                "by Message-ID too"
                if found
                else "no Message-ID"
                if rfc_id is None
                else "NOT by Message-ID"
            )
            print(f"{eml.name:<12} {'ok ' if ok else 'BAD'} {shown:<17} {provider[:90]}")
        with_ids = sum(message_id(f) is not None for f in files)
        print(
            f"settled {len(files) - failures} of {len(files)}; found by Message-ID "
            f"{by_rfc_id} of {with_ids}"
        )
        return 1 if failures or not settled else 0


if __name__ == "__main__":
    raise SystemExit(main())
