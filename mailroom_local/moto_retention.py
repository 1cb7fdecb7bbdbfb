"""moto holding what AWS would hold, no more: the local stack's memory patches and compaction.

moto 5.2.5 keeps what AWS forgets, and one call grows with the data: TransactWriteItems
deep-copies every table it touches (to roll back), so each transaction costs time and memory
in proportion to the table, and the copies are cyclic garbage that only a full collection
frees; the rollback also put back the whole table, undoing other callers' writes made
meanwhile. SNS builds and keeps a new signing certificate per message delivered to a queue
and every published message per topic (``sent_notifications``); SQS keeps the receipt
handle of every deleted message. DynamoDB TTL and S3 lifecycle expiry never happen. Patched
here: a transaction backs up and restores only its own items; one certificate per
subscription, all signed with one key made at start-up (moto makes a 2048-bit RSA key per
subscription on its first delivery, inside the first burst; SNS signs a region's messages
with one certificate), nothing kept per publish; a bounded window of deleted receipt handles; and
``compact`` deletes TTL-expired items and lifecycle-expired objects, as AWS would.
"""

from __future__ import annotations

import base64
import copy
import functools
import gc
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

_MARK = "_mailroom_retention_patch"
# Receipt handles remembered after their message was deleted, per queue: a repeated delete
# of a recent handle still succeeds, as in SQS.
DELETED_HANDLES_KEPT = 1000
COMPACT_EVERY_SECONDS = 60.0


class RecentSet:
    """A set that forgets its oldest members beyond ``limit`` (moto's ``deleted_messages``)."""

    def __init__(self, limit: int | None = None) -> None:
        self._limit = DELETED_HANDLES_KEPT if limit is None else limit
        self._items: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Any:
        return iter(list(self._items))

    def add(self, item: str) -> None:
        self.update([item])

    def update(self, items: Iterable[str]) -> None:
        with self._lock:
            for item in items:
                self._items[item] = None
                self._items.move_to_end(item)
            while len(self._items) > self._limit:
                self._items.popitem(last=False)


class _TablesKeptInPlace:
    """Stands in for the ``copy`` module inside moto's DynamoDB backend: a table is not
    copied (the transaction wrapper backs up its items instead); anything else is."""

    def __init__(self, table_type: type) -> None:
        self._table_type = table_type

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        if isinstance(value, self._table_type):
            return value
        return copy.deepcopy(value, memo)

    def copy(self, value: Any) -> Any:
        return copy.copy(value)


def _transaction_keys(backend: Any, transact_items: list[dict[str, Any]]) -> list[tuple[Any, Any]]:
    """(table, (hash, range)) of every item a transaction names, in order."""
    keys = []
    for entry in transact_items:
        op_type, op = next(iter(entry.items()), ("", {}))
        table = backend.tables.get(op.get("TableName"))
        attrs = op.get("Item" if op_type == "Put" else "Key") or {}
        names = [table.hash_key_attr, table.range_key_attr] if table is not None else []
        key = {name: attrs[name] for name in names if name is not None and name in attrs}
        # A malformed entry is left to moto, which refuses the transaction and says why.
        if table is not None and len(key) == len([n for n in names if n is not None]):
            keys.append((table, backend.get_keys_value(table, key)))
    return keys


def _restore(table: Any, hash_key: Any, range_key: Any, item: Any) -> None:
    if item is None:
        table.delete_item(hash_key, range_key)
    elif range_key is not None:
        table.items[hash_key][range_key] = item
    else:
        table.items[hash_key] = item


def install() -> Callable[[], None]:
    """Patch moto's DynamoDB, SNS and SQS in this process; returns a function that undoes it."""
    from moto.dynamodb import models as dynamodb
    from moto.dynamodb.models.table import Table
    from moto.sns import models as sns
    from moto.sqs import models as sqs

    if getattr(dynamodb.DynamoDBBackend, _MARK, False):
        return lambda: None
    original_transact = dynamodb.DynamoDBBackend.transact_write_items
    original_copy = dynamodb.copy
    original_post_data = sns.Subscription.get_post_data
    original_publish = sns.Topic.publish
    original_queue_init = sqs.Queue.__init__
    original_private_key = sns.Subscription.private_key
    key = _signing_key()

    def transact_write_items(backend: Any, transact_items: list[dict[str, Any]]) -> None:
        before = [
            (table, hash_key, range_key, copy.deepcopy(table.get_item(hash_key, range_key)))
            for table, (hash_key, range_key) in _transaction_keys(backend, transact_items)
        ]
        try:
            original_transact(backend, transact_items)
        except Exception:
            for table, hash_key, range_key, item in reversed(before):
                _restore(table, hash_key, range_key, item)
            raise

    def publish(topic: Any, *args: Any, **kwargs: Any) -> str:
        message_id = original_publish(topic, *args, **kwargs)
        topic.sent_notifications.clear()  # read only by moto's own test API
        return str(message_id)

    def get_post_data(
        subscription: Any,
        message: str,
        message_id: str,
        subject: str | None,
        message_attributes: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        signer = getattr(subscription, "_mailroom_signer", None)
        if signer is None:
            # The first envelope builds (and publishes) the subscription's certificate.
            data = original_post_data(subscription, message, message_id, subject, None)
            subscription._mailroom_signer = data["SigningCertURL"]
        else:
            data = _envelope(subscription, signer, message, message_id)
        if subject:
            data["Subject"] = subject
        if message_attributes:
            data["MessageAttributes"] = message_attributes
        return data

    def queue_init(queue: Any, *args: Any, **kwargs: Any) -> None:
        original_queue_init(queue, *args, **kwargs)
        queue.deleted_messages = RecentSet()

    dynamodb.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    dynamodb.copy = _TablesKeptInPlace(Table)  # type: ignore[assignment]
    sns.Subscription.get_post_data = get_post_data  # type: ignore[method-assign]
    sns.Topic.publish = publish  # type: ignore[method-assign]
    sqs.Queue.__init__ = queue_init  # type: ignore[method-assign]
    sns.Subscription.private_key = lambda subscription: key  # type: ignore[method-assign]
    setattr(dynamodb.DynamoDBBackend, _MARK, True)

    def undo() -> None:
        dynamodb.DynamoDBBackend.transact_write_items = original_transact  # type: ignore[method-assign]
        dynamodb.copy = original_copy  # type: ignore[assignment]
        sns.Subscription.get_post_data = original_post_data  # type: ignore[method-assign]
        sns.Topic.publish = original_publish  # type: ignore[method-assign]
        sqs.Queue.__init__ = original_queue_init  # type: ignore[method-assign]
        sns.Subscription.private_key = original_private_key  # type: ignore[method-assign]
        setattr(dynamodb.DynamoDBBackend, _MARK, False)

    return undo


@functools.cache
def _signing_key() -> Any:
    """The process's one SNS signing key."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _envelope(subscription: Any, cert_url: str, message: str, message_id: str) -> dict[str, Any]:
    """SNS's notification envelope signed with the subscription's key (moto's own fields)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from moto.core.utils import iso_8601_datetime_with_milliseconds

    topic = subscription.topic
    timestamp = iso_8601_datetime_with_milliseconds()
    string_to_sign = (
        f"Message\n{message}\nMessageId\n{message_id}\nTimestamp\n{timestamp}\n"
        f"TopicArn\n{topic.arn}\nType\nNotification\n"
    )
    signature = subscription.private_key().sign(
        string_to_sign.encode("UTF-8"), padding.PKCS1v15(), hashes.SHA256()
    )
    return {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": topic.arn,
        "Message": message,
        "Timestamp": timestamp,
        "SignatureVersion": "2",
        "Signature": base64.b64encode(signature).decode("utf-8"),
        "SigningCertURL": cert_url,
        "UnsubscribeURL": f"https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"
        f"&SubscriptionArn={subscription.arn}",
    }


def compact(now: float | None = None) -> dict[str, int]:
    """Delete what AWS would have expired by ``now``: DynamoDB items past their TTL
    attribute, S3 objects past their bucket's lifecycle expiration. Counts per kind."""
    from moto.dynamodb.models import dynamodb_backends
    from moto.s3.models import s3_backends

    now = time.time() if now is None else now
    removed = {"dynamodb_items": 0, "s3_objects": 0}
    for regions in list(dynamodb_backends.values()):
        for backend in list(regions.values()):
            for table in list(backend.tables.values()):
                removed["dynamodb_items"] += _expire_items(table, now)
    for backend in _s3_backends(s3_backends):
        for bucket in list(backend.buckets.values()):
            removed["s3_objects"] += _expire_objects(backend, bucket, now)
    gc.collect()
    return removed


def _s3_backends(backends: Any) -> list[Any]:
    found = []
    for regions in list(backends.values()):
        for backend in list(regions.values()):
            if backend not in found:
                found.append(backend)
    return found


def _expire_items(table: Any, now: float) -> int:
    ttl = table.ttl or {}
    attribute = ttl.get("AttributeName")
    if ttl.get("TimeToLiveStatus") != "ENABLED" or not attribute:
        return 0
    expired = []
    for item in list(table.all_items()):
        value = item.attrs.get(attribute)
        if value is None or value.type != "N":
            continue  # DynamoDB ignores a TTL attribute that is not a number
        try:
            if float(value.value) < now:
                expired.append(item)
        except ValueError:
            continue
    for item in expired:
        table.delete_item(item.hash_key, item.range_key)
    return len(expired)


def _expire_objects(backend: Any, bucket: Any, now: float) -> int:
    rules = [
        r
        for r in bucket.rules
        if r.status == "Enabled" and r.expiration_days and _rule_prefix(r) is not None
    ]
    if not rules:
        return 0
    moment = datetime.fromtimestamp(now, UTC)
    expired = []
    for name, key in list(bucket.keys.items()):
        if not hasattr(key, "last_modified") or type(key).__name__ == "FakeDeleteMarker":
            continue  # already expired: a delete marker is current
        for rule in rules:
            if not name.startswith(_rule_prefix(rule) or ""):
                continue
            modified = key.last_modified
            if modified.tzinfo is None:
                modified = modified.replace(tzinfo=UTC)
            if moment - modified > timedelta(days=int(rule.expiration_days)):
                expired.append(name)
                break
    for name in expired:
        backend.delete_object(bucket.name, name)
    return len(expired)


def _rule_prefix(rule: Any) -> str | None:
    if rule.prefix is not None:
        return str(rule.prefix)
    prefix = getattr(rule.filter, "prefix", None) if rule.filter is not None else None
    return None if prefix is None else str(prefix)


def start_compaction(every: float = COMPACT_EVERY_SECONDS) -> threading.Event:
    """Run ``compact`` every ``every`` seconds in a daemon thread; set the event to stop."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            try:
                compact()
            except Exception as err:  # compaction must never take the embedded AWS down
                print(f"moto compaction: {type(err).__name__}: {err}", file=sys.stderr, flush=True)

    threading.Thread(target=loop, name="moto-compaction", daemon=True).start()
    return stop
