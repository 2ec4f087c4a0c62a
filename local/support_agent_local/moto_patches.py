"""Three narrow patches of moto's DynamoDB backend: the local runtime's cost per request does not grow
with the number of items stored (1, 2), and concurrent requests are isolated as in DynamoDB (3).

1. TransactWriteItems. moto deep-copies every table a transaction names before running it (and puts the
   copies back if it is cancelled): the cost of each transaction grows with everything stored in those
   tables. Here a transaction backs up only the items it names (a deep copy of each, or the fact that it
   was absent) and, if it is cancelled or fails, puts exactly those back, in place. Only those items can
   change: Put, Update, Delete and ConditionCheck each act on the one item whose key they carry. So a
   cancelled transaction still leaves every table as it was, and (unlike moto's whole-table restore) it
   does not undo writes that other threads made meanwhile to other items, nor swap the table object.
2. Query on a table's own key. moto's Table.query walks `all_items()`, which lists and sorts the whole
   table, and then keeps the items whose hash key matches: O(N log N) per query. Items are stored by hash
   key already, so a query on the table (not on an index) reads just that partition.
3. Isolation. moto runs the backend's item operations unguarded, so threads (concurrent Slack clicks, the
   state machine's own threads) interleave inside one request: a conditional write can pass its check
   while another thread changes the item, and a cancelled transaction's restore can undo another
   thread's write. Each DynamoDB request here holds one lock, as if DynamoDB's guarantees held
   (atomic single-item writes, serializable transactions).

Upstream, the changes would live in moto/dynamodb/models/__init__.py
(DynamoDBBackend.transact_write_items: back up the named items, not `copy.deepcopy(table)`; a lock
around each request, from parsing to its serialized answer) and moto/dynamodb/models/table.py (Table.query:
`self.items.get(hash_key)` instead of `self.all_items()` when `index_name` is None). All are tested in
tests/integration/test_moto_patches.py.
"""

from __future__ import annotations

import copy
import threading
import types
from typing import Any

_local = threading.local()


def apply() -> None:
    """Patch moto once per process (idempotent)."""
    from moto.dynamodb import models

    if getattr(models, "_support_agent_patches", False):
        return
    _patch_transactions(models)
    _patch_queries(models)
    _patch_isolation()
    models._support_agent_patches = True  # type: ignore[attr-defined]


# --- TransactWriteItems: back up the items a transaction names ------------------------------------------


class _ItemBackup:
    """One item's state before a transaction: a deep copy of it, or None if it was absent."""

    __slots__ = ("bucket_existed", "hash_key", "item", "range_key", "table")

    def __init__(self, table: Any, hash_key: Any, range_key: Any) -> None:
        self.table, self.hash_key, self.range_key = table, hash_key, range_key
        bucket = table.items.get(hash_key)  # dict.get: does not create a partition in the defaultdict
        self.bucket_existed = bucket is not None
        if table.range_key_attr is not None:
            current = bucket.get(range_key) if bucket is not None else None
        else:
            current = bucket
        self.item = copy.deepcopy(current) if current is not None else None

    def restore(self) -> None:
        items = self.table.items
        if self.table.range_key_attr is None:
            if self.item is None:
                items.pop(self.hash_key, None)
            else:
                items[self.hash_key] = self.item
            return
        if self.item is not None:
            items[self.hash_key][self.range_key] = self.item
            return
        bucket = items.get(self.hash_key)
        if bucket is not None:
            bucket.pop(self.range_key, None)
            if not bucket and not self.bucket_existed:
                del items[self.hash_key]  # reads of a missing key create empty partitions in moto


class _TransactionBackup:
    """What a transaction may change: its items, or (when an item's key cannot be read) whole tables,
    and each table's stream records."""

    def __init__(self, backend: Any, transact_items: list[dict[str, Any]]) -> None:
        from moto.dynamodb.models.dynamo_type import DynamoType

        self.items: list[_ItemBackup] = []
        self.whole: dict[int, tuple[Any, Any]] = {}  # id(table) → (table, deep copy of its items)
        self.streams: dict[int, tuple[Any, int]] = {}
        for entry in transact_items:
            try:
                op_type, op = next(iter(entry.items()))
                table = backend.get_table(op["TableName"])
            except Exception:  # noqa: S112 (moto reports the error; nothing of a missing table can change)
                continue
            shard = table.stream_shard
            if shard is not None and id(table) not in self.streams:
                self.streams[id(table)] = (table, len(shard.items))
            if id(table) in self.whole:
                continue
            try:
                key = op["Item"] if op_type == "Put" else op["Key"]
                hash_key = DynamoType(key[table.hash_key_attr])
                range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
            except Exception:
                # A key moto will reject: back the table up whole (rare; correctness over speed).
                self.whole[id(table)] = (table, copy.deepcopy(table.items))
                continue
            self.items.append(_ItemBackup(table, hash_key, range_key))

    def restore(self) -> None:
        # Newest first, so that the first backup of an item (its state before the transaction) wins.
        for backup in reversed(self.items):
            if id(backup.table) not in self.whole:
                backup.restore()
        for table, items in self.whole.values():
            table.items = items
        for table, length in self.streams.values():
            if table.stream_shard is not None:
                del table.stream_shard.items[length:]


def _patch_transactions(models: Any) -> None:
    original = models.DynamoDBBackend.transact_write_items
    table_class = models.Table

    def deepcopy(obj: Any, memo: Any = None) -> Any:
        # Inside a transaction moto's own whole-table backup is not needed: hand the table itself back, so
        # its "restore" (`self.tables[name] = backup`) changes nothing. Everything else is copied as usual.
        if getattr(_local, "in_transaction", False) and isinstance(obj, table_class):
            return obj
        return copy.deepcopy(obj, memo)

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> Any:
        if len(transact_items) > 100:  # moto refuses before touching anything
            return original(self, transact_items)
        backup = _TransactionBackup(self, transact_items)
        _local.in_transaction = True
        try:
            return original(self, transact_items)
        except BaseException:
            backup.restore()
            raise
        finally:
            _local.in_transaction = False

    # What moto's module sees as `copy`: the standard module, with this deepcopy.
    models.copy = types.SimpleNamespace(**{**vars(copy), "deepcopy": deepcopy})
    models.DynamoDBBackend.transact_write_items = transact_write_items


# --- Query: read one partition, not the whole table ------------------------------------------------------


def _patch_queries(models: Any) -> None:
    table_class = models.Table
    original_query = table_class.query
    original_all_items = table_class.all_items

    def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        # Positional order in moto: range_comparison, range_objs, limit, exclusive_start_key,
        # scan_index_forward, projection_expressions, index_name, ...
        index_name = kwargs["index_name"] if "index_name" in kwargs else (args[6] if len(args) > 6 else None)
        if index_name is not None or hash_key is None:
            return original_query(self, hash_key, *args, **kwargs)
        _local.partition = (self, hash_key)
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            _local.partition = None

    def all_items(self: Any) -> Any:
        partition = getattr(_local, "partition", None)
        if partition is None or partition[0] is not self:
            return original_all_items(self)
        _local.partition = None  # one listing per query
        bucket = self.items.get(partition[1])
        if bucket is None:
            return []
        items = list(bucket.values()) if self.range_key_attr else [bucket]
        # The same order as moto's all_items (hash key equal here, so by range key).
        return sorted(items, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)

    table_class.query = query
    table_class.all_items = all_items


# --- Isolation: one request at a time, as DynamoDB's atomic items and transactions behave ---------------

_backend_lock = threading.RLock()


def _patch_isolation() -> None:
    from moto.core.botocore_stubber import BotocoreStubber

    # One DynamoDB request at a time, whole: moto runs the backend's item operations unguarded (a
    # conditional write can pass its check while another thread changes the item; a cancelled
    # transaction's restore can undo another thread's write), and it serializes its answer after the
    # backend returns (another thread's write to the item breaks that walk).
    process_request = BotocoreStubber.process_request

    def isolated_request(self: Any, request: Any) -> Any:
        if "://dynamodb." not in str(getattr(request, "url", "")):
            return process_request(self, request)
        with _backend_lock:
            return process_request(self, request)

    BotocoreStubber.process_request = isolated_request  # type: ignore[method-assign]
