"""What a running local stack's embedded AWS holds: the state table's items by kind (their
key's first part) with their size as JSON, the routes, the objects in the mail bucket and the
messages waiting in the queues. The steady bench prints it at the end, after its figures, to
show what the embedded AWS's memory grows with. It reads the whole table: moto answers each
page of a Scan in time that grows with the table, so on a stack that has run for hours this
takes minutes, and it holds moto's lock meanwhile (run it on an idle stack).

    .venv/bin/python bench/census.py --state-dir .mailroom
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from mailroom_local.attach import queued, stack_client  # noqa: E402
from mailroom_local.stack import attached  # noqa: E402


def census(local: dict[str, Any]) -> list[str]:
    dynamodb = stack_client(local, "dynamodb")
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for page in dynamodb.get_paginator("scan").paginate(TableName=local["tables"]["state"]):
        for item in page["Items"]:
            kind = item["PK"]["S"].split("#", 1)[0]
            counts[kind] += 1
            sizes[kind] += len(json.dumps(item))
    routes = dynamodb.scan(TableName=local["tables"]["routes"], Select="COUNT")["Count"]
    objects = size = 0
    s3 = stack_client(local, "s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=local["bucket"]):
        objects += len(page.get("Contents", []))
        size += sum(o["Size"] for o in page.get("Contents", []))
    lines = [
        f"state table: {sum(counts.values())} items, {sum(sizes.values()) / 1e6:.1f} MB as JSON"
    ]
    lines += [
        f"  {kind:<18} {n:>8} {sizes[kind] / 1e6:6.1f} MB" for kind, n in counts.most_common()
    ]
    lines.append(
        f"routes table: {routes} items; mail bucket: {objects} objects, {size / 1e6:.1f} MB"
    )
    lines.append(f"queued: {queued(local)} messages")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/census.py")
    parser.add_argument("--state-dir", type=Path, required=True, help="a running stack's")
    args = parser.parse_args()
    with attached(args.state_dir, prefix="mailroom-census-") as local:
        print("\n".join(census(local)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
