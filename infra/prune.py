"""What the shipped deployment zip leaves out: ``prune(src, dst)`` (see bench/package_size.py).

Only ``gmail.v1`` of googleapiclient's 611 discovery documents is kept (the Gmail client is
built with ``static_discovery=True``), and boto3/botocore/s3transfer/jmespath are left to the
Lambda Python runtime. ``python -m infra.package`` prunes its ``deployment.zip`` with this.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

# In the Lambda Python runtime already; we rely on its version (README: what that costs).
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath")
DISCOVERY = "googleapiclient/discovery_cache/documents/"
KEEP_DISCOVERY = {"gmail.v1.json"}


def _dropped(name: str) -> bool:
    top = name.split("/", 1)[0]
    if any(
        top == p or (top.startswith(f"{p}-") and top.endswith(".dist-info"))
        for p in RUNTIME_PROVIDED
    ):
        return True
    if name.startswith(DISCOVERY):
        return name[len(DISCOVERY) :] not in KEEP_DISCOVERY
    return False


def prune(source: Path, target: Path) -> None:
    """Copy the deployment zip ``source`` to ``target`` without what ``_dropped`` names."""
    with (
        zipfile.ZipFile(source) as src,
        zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as dst,
    ):
        for info in src.infolist():
            if not _dropped(info.filename):
                dst.writestr(info, src.read(info.filename))
