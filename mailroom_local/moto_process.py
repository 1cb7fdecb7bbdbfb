"""``python -m mailroom_local.moto_process``: the embedded AWS in a process of its own.

moto is the busiest part of the local stack; in the pump's process it competed with the
handlers for one interpreter lock. Runs moto's server with IAM enforced (``moto_iam``),
the patches of ``moto_dispatch``, ``moto_sqs`` and ``moto_retention`` (and its periodic
compaction) on a free loopback port, prints ``port <n>`` once it listens, and stops on
SIGTERM or when its parent closes stdin.
"""

from __future__ import annotations

import os
import signal
import sys
import threading


def main() -> int:
    import logging

    from moto import settings
    from moto.server import ThreadedMotoServer

    from mailroom_local import moto_dispatch, moto_iam, moto_retention, moto_sqs

    moto_dispatch.install()
    moto_sqs.install()
    moto_retention.install()
    moto_iam.install()
    # Every call is authenticated and authorized from the first: the stack provisions as the
    # administrator (key ``local``), each function as its own user (mailroom_local.iam).
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    compaction = moto_retention.start_compaction()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per AWS call is noise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    # The parent holds our stdin; if it dies without stopping us, reading it ends.
    threading.Thread(target=lambda: (sys.stdin.read(), stopping.set()), daemon=True).start()
    print(f"port {server.get_host_and_port()[1]}", flush=True)
    stopping.wait()
    compaction.set()
    # Everything here is memory: leave at once rather than wait for the server's request
    # threads (long polls among them) to wind down; the stack wants every part gone quickly.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
