"""Claim checks: payloads too big for SNS go to S3 ``payloads/`` and travel as a pointer.

``publish`` is the one way mailroom puts a payload on a FIFO topic, claim check included.

A pointer is the JSON object ``{"mailroom_claim_check": {"bucket", "key", "sha256", "size"}}``.
The key is the payload's SHA-256, so a retried publish of the same payload writes the same
object instead of piling up copies.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from chalicelib.platform.aws import aws_client
from chalicelib.platform.errors import PoisonMessageError, TransientError
from chalicelib.platform.settings import get_settings

POINTER_KEY = "mailroom_claim_check"
PAYLOAD_PREFIX = "payloads/"


def check_in(payload: str) -> str:
    """``payload`` itself if it fits an SNS message, else a pointer to it in S3."""
    settings = get_settings()
    data = payload.encode("utf-8")
    if len(data) <= settings.claim_check_bytes:
        return payload
    digest = hashlib.sha256(data).hexdigest()
    key = f"{PAYLOAD_PREFIX}{digest}.json"
    try:
        aws_client("s3").put_object(
            Bucket=settings.mail_bucket, Key=key, Body=data, ContentType="application/json"
        )
    except Exception as err:
        raise TransientError("cannot store claim-checked payload") from err
    pointer = {"bucket": settings.mail_bucket, "key": key, "sha256": digest, "size": len(data)}
    return json.dumps({POINTER_KEY: pointer})


def message_group(key: str) -> str:
    """A FIFO group id for ``key`` (a mailbox): hashed, as group ids show up in consoles."""
    return hashlib.sha256(key.strip().lower().encode("utf-8")).hexdigest()[:64]


def publish(topic_arn: str, payload: str, *, group_key: str, deduplication_id: str) -> None:
    """Publish ``payload`` (claim-checked if large) to a FIFO topic; failures are transient."""
    message = check_in(payload)
    try:
        aws_client("sns").publish(
            TopicArn=topic_arn,
            Message=message,
            MessageGroupId=message_group(group_key),
            MessageDeduplicationId=deduplication_id,
        )
    except Exception as err:
        raise TransientError("publish to the topic failed") from err


def check_out(message: str) -> str:
    """The payload behind ``message``: ``message`` itself unless it is a pointer."""
    if POINTER_KEY not in message[:64]:
        return message
    try:
        pointer: dict[str, Any] = json.loads(message)[POINTER_KEY]
        bucket, key, digest = pointer["bucket"], pointer["key"], pointer["sha256"]
    except (ValueError, KeyError, TypeError) as err:
        raise PoisonMessageError("malformed claim-check pointer") from err
    from botocore.exceptions import ClientError

    try:
        data = aws_client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
            raise PoisonMessageError("claim-checked payload is missing from S3") from err
        raise TransientError("cannot read claim-checked payload") from err
    if hashlib.sha256(data).hexdigest() != digest:
        raise PoisonMessageError("claim-checked payload does not match its digest")
    return str(data.decode("utf-8"))
