"""``python -m mailroom_local run|demo|send|receive|probe|authorize-gmail|chalice-local``: the
local stack, a demo that sends it mail, a signed outbound request from a JSON file, a raw email
received as SES would, both probes, another Gmail mailbox authorized, and ``chalice local`` by
hand joined to a running stack."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mailroom_local")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the whole pipeline on loopback")
    run.add_argument("--state-dir", type=Path, default=Path(".mailroom"))
    run.add_argument("--api-port", type=int, default=8000, help="0 picks a free port")
    run.add_argument(
        "--pollers",
        type=int,
        default=int(os.environ.get("MAILROOM_LOCAL_POLLERS", "4")),
        help="batches each queue's handler runs at once, as Lambda does (default 4, "
        "or MAILROOM_LOCAL_POLLERS)",
    )
    run.add_argument(
        "--report-batch-item-failures",
        choices=["on", "off"],
        default="off",
        help="apply Lambda's rules as if the event source mapping had the flag",
    )
    demo = sub.add_parser("demo", help="send sample emails to a running stack")
    demo.add_argument("--state-dir", type=Path, default=Path(".mailroom"))
    send = sub.add_parser("send", help="sign an outbound request file and POST it to the stack")
    send.add_argument("request", type=Path, nargs="?", help="JSON file (default: a sample)")
    send.add_argument("--state-dir", type=Path, default=Path(".mailroom"))
    probe = sub.add_parser("probe", help="run both end-to-end probes against a running stack")
    probe.add_argument("--state-dir", type=Path, default=Path(".mailroom"))
    probe.add_argument("--timeout", type=float, default=60.0)
    receive = sub.add_parser("receive", help="receive a raw email as SES would (make receive)")
    receive.add_argument("eml", type=Path)
    receive.add_argument("--to", default="", help="envelope recipients, comma separated")
    receive.add_argument("--verdicts", default="", help="e.g. spam=FAIL,spf=missing")
    receive.add_argument(
        "--from",
        dest="sender",
        default=None,
        help="envelope sender (MAIL FROM); default: Return-Path, else From, else <> (empty)",
    )
    receive.add_argument("--state-dir", type=Path, default=Path(".mailroom"))
    authorize = sub.add_parser(
        "authorize-gmail", help="authorize another Gmail mailbox on the running local stack"
    )
    authorize.add_argument("mailbox")
    authorize.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="NAME",
        help="give the mailbox a user label NAME and print its id (repeatable)",
    )
    authorize.add_argument("--state-dir", type=Path, default=Path(".mailroom"))
    by_hand = sub.add_parser(
        "chalice-local",
        help="`chalice local --stage local` joined to a running stack (for a debugger)",
    )
    by_hand.add_argument(
        "--stack-file",
        default=os.environ.get("MAILROOM_LOCAL_STACK_FILE", ".mailroom/local.json"),
        help="the running stack's local.json (default MAILROOM_LOCAL_STACK_FILE or "
        ".mailroom/local.json)",
    )
    # Any other arguments go to `chalice local` (e.g. --port 8001).
    args, chalice_args = parser.parse_known_args(argv)
    if args.command == "chalice-local":
        from mailroom_local.attach import chalice_local

        return chalice_local(args.stack_file, chalice_args)
    if chalice_args:
        parser.error(f"unrecognized arguments: {' '.join(chalice_args)}")
    if args.command == "authorize-gmail":
        from mailroom_local.authorize import authorize as authorize_gmail

        return authorize_gmail(args.state_dir, args.mailbox, args.label)
    if args.command == "probe":
        from mailroom_local import probe as probes

        return probes.run(args.state_dir, timeout=args.timeout)
    if args.command == "run":
        from mailroom_local.stack import run as run_stack

        return run_stack(
            args.state_dir,
            api_port=args.api_port,
            report_batch_item_failures=args.report_batch_item_failures == "on",
            pollers=max(1, args.pollers),
        )
    if args.command == "receive":
        from mailroom_local.receive import receive as receive_email

        return receive_email(
            args.state_dir, args.eml, to=args.to, verdicts=args.verdicts, sender=args.sender
        )
    from mailroom_local import demo

    if args.command == "send":
        return demo.send(args.state_dir, args.request or demo.OUTBOUND_SAMPLE)
    return demo.run(args.state_dir)


if __name__ == "__main__":
    sys.exit(main())
