"""Deployment package size, as built and as shipped: ``python bench/package_size.py [--check]``.

Builds the package with ``chalice package`` (every function shares one zip), prints its zipped
and unzipped size and the biggest top-level entries, then applies ``prune`` and prints the
shipped size. ``prune`` keeps only ``gmail.v1`` of googleapiclient's 611 discovery documents
(the client is built with ``static_discovery=True``) and leaves out boto3/botocore/s3transfer/
jmespath, which the Lambda Python runtime provides. ``--check`` fails above the targets
(12 MB zipped, 40 MB unzipped). See the README, "Package size".
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from infra.prune import prune

ROOT = Path(__file__).resolve().parent.parent
MAX_ZIPPED = 12 * 1024 * 1024
MAX_UNZIPPED = 40 * 1024 * 1024


def sizes(path: Path) -> tuple[int, int, Counter[str]]:
    """Zipped bytes, unzipped bytes, and unzipped bytes per top-level entry."""
    per_top: Counter[str] = Counter()
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            per_top[info.filename.split("/", 1)[0]] += info.file_size
    return path.stat().st_size, sum(per_top.values()), per_top


def build(out: Path) -> Path:
    env = {**os.environ, "MAILROOM_STAGE": "dev", "AWS_DEFAULT_REGION": "us-east-1"}
    subprocess.run(
        [str(Path(sys.executable).with_name("chalice")), "package", "--stage", "dev", str(out)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    return out / "deployment.zip"


def _mb(value: int) -> str:
    return f"{value / 1024 / 1024:.1f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/package_size.py")
    parser.add_argument("--check", action="store_true", help="fail above the size targets")
    parser.add_argument("--zip", type=Path, help="measure this deployment.zip instead of building")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        built = args.zip or build(Path(scratch) / "out")
        zipped, unzipped, per_top = sizes(built)
        print(f"as built (chalice package): {_mb(zipped)} zipped / {_mb(unzipped)} unzipped")
        for name, size in per_top.most_common(8):
            print(f"  {name:<40} {_mb(size)}")
        shipped = Path(scratch) / "pruned.zip"
        prune(built, shipped)
        zipped, unzipped, _ = sizes(shipped)
        print(f"as shipped (pruned):        {_mb(zipped)} zipped / {_mb(unzipped)} unzipped")
        print(
            f"targets:                    {_mb(MAX_ZIPPED)} zipped / {_mb(MAX_UNZIPPED)} unzipped"
        )
    if args.check and (zipped > MAX_ZIPPED or unzipped > MAX_UNZIPPED):
        print("error: the shipped package is over target", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
