"""The local runtime's moto patches (support_agent_local.moto_patches): a cancelled TransactWriteItems
still leaves every table unchanged, without copying whole tables; a query reads one partition and
returns what moto's full-table walk returned."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from support_agent_local import moto_patches

REGION = "us-east-1"
PAIRS = "pairs"  # hash and range key
SINGLES = "singles"  # hash key only


@pytest.fixture
def ddb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(key, value)
    moto_patches.apply()
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        client.create_table(
            TableName=PAIRS,
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        client.create_table(
            TableName=SINGLES,
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for p in range(20):
            for s in range(5):
                client.put_item(
                    TableName=PAIRS,
                    Item={"pk": {"S": f"P{p}"}, "sk": {"S": f"S{s}"}, "n": {"N": str(p * 10 + s)}},
                )
            client.put_item(TableName=SINGLES, Item={"pk": {"S": f"K{p}"}, "count": {"N": str(p)}})
        yield client


def _backend() -> Any:
    from moto.dynamodb.models import dynamodb_backends

    return dynamodb_backends["123456789012"][REGION]


def _state(client: Any) -> dict[str, Any]:
    """Everything a client can read, plus moto's own layout (table objects and partitions)."""
    backend = _backend()
    state: dict[str, Any] = {}
    for table in (PAIRS, SINGLES):
        items = client.scan(TableName=table, ConsistentRead=True)["Items"]
        state[table] = sorted(items, key=lambda i: (i["pk"]["S"], i.get("sk", {}).get("S", "")))
        state[f"{table} object"] = id(backend.tables[table])
        state[f"{table} partitions"] = sorted(str(k.value) for k in backend.tables[table].items)
    return state


def _no_whole_table_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.dynamodb.models import Table

    def refuse(self: Any, memo: Any) -> Any:
        raise AssertionError("a whole table was deep-copied")

    monkeypatch.setattr(Table, "__deepcopy__", refuse, raising=False)


def _put(table: str, pk: str, sk: str | None = None, **attrs: Any) -> dict[str, Any]:
    item = {"pk": {"S": pk}, **({"sk": {"S": sk}} if sk else {}), **attrs}
    return {"Put": {"TableName": table, "Item": item}}


def _writes_then(failing: dict[str, Any]) -> list[dict[str, Any]]:
    """Seven operations over both tables, `failing` fifth: new items, updates of existing ones, a delete."""
    return [
        _put(PAIRS, "P0", "NEW", n={"N": "1"}),  # new item in an existing partition
        _put(PAIRS, "PNEW", "S0", n={"N": "2"}),  # new item in a new partition
        {
            "Update": {
                "TableName": PAIRS,
                "Key": {"pk": {"S": "P1"}, "sk": {"S": "S1"}},
                "UpdateExpression": "SET n = n + :one, extra = :x",
                "ExpressionAttributeValues": {":one": {"N": "1"}, ":x": {"S": "changed"}},
            }
        },
        {"Delete": {"TableName": SINGLES, "Key": {"pk": {"S": "K3"}}}},
        failing,
        {
            "Update": {
                "TableName": SINGLES,
                "Key": {"pk": {"S": "K4"}},
                "UpdateExpression": "ADD #c :one",
                "ExpressionAttributeNames": {"#c": "count"},
                "ExpressionAttributeValues": {":one": {"N": "1"}},
            }
        },
        _put(SINGLES, "KNEW", count={"N": "9"}),
    ]


def test_a_transaction_cancelled_midway_changes_nothing(ddb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_whole_table_copies(monkeypatch)
    before = _state(ddb)
    failing = {
        "ConditionCheck": {
            "TableName": PAIRS,
            "Key": {"pk": {"S": "P2"}, "sk": {"S": "S2"}},
            "ConditionExpression": "attribute_not_exists(pk)",  # the item exists: cancelled
        }
    }
    with pytest.raises(ClientError) as err:
        ddb.transact_write_items(TransactItems=_writes_then(failing))
    assert err.value.response["Error"]["Code"] == "TransactionCanceledException"
    codes = [r["Code"] for r in err.value.response["CancellationReasons"]]
    assert codes == ["None"] * 4 + ["ConditionalCheckFailed"] + ["None"] * 2
    assert _state(ddb) == before


def test_a_condition_on_a_missing_item_leaves_no_partition_behind(ddb: Any) -> None:
    before = _state(ddb)
    failing = {
        "ConditionCheck": {
            "TableName": PAIRS,
            "Key": {"pk": {"S": "ABSENT"}, "sk": {"S": "X"}},
            "ConditionExpression": "attribute_exists(pk)",
        }
    }
    with pytest.raises(ClientError, match="TransactionCanceled"):
        ddb.transact_write_items(TransactItems=_writes_then(failing))
    assert _state(ddb) == before


@pytest.mark.parametrize(
    "failing",
    [
        pytest.param(_put(PAIRS, "P0", "NEW"), id="two operations on one item"),
        pytest.param(
            {"Delete": {"TableName": PAIRS, "Key": {"pk": {"S": "P5"}}}}, id="a key without its range key"
        ),
        pytest.param(
            {"Put": {"TableName": PAIRS, "Item": {"pk": {"N": "5"}, "sk": {"S": "S9"}}}},
            id="a key of the wrong type",
        ),
        pytest.param(
            {
                "Update": {
                    "TableName": PAIRS,
                    "Key": {"pk": {"S": "P5"}, "sk": {"S": "S0"}},
                    "UpdateExpression": "SET n = n + :s",
                    "ExpressionAttributeValues": {":s": {"S": "text"}},
                }
            },
            id="an update that cannot apply",
        ),
    ],
)
def test_a_transaction_refused_midway_changes_nothing(
    ddb: Any, monkeypatch: pytest.MonkeyPatch, failing: dict[str, Any]
) -> None:
    before = _state(ddb)
    with pytest.raises(ClientError):
        ddb.transact_write_items(TransactItems=_writes_then(failing))
    assert _state(ddb) == before


def test_a_committed_transaction_writes_everything_without_copying_tables(
    ddb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_whole_table_copies(monkeypatch)
    ok = {
        "ConditionCheck": {
            "TableName": PAIRS,
            "Key": {"pk": {"S": "P2"}, "sk": {"S": "S2"}},
            "ConditionExpression": "attribute_exists(pk)",
        }
    }
    ddb.transact_write_items(TransactItems=_writes_then(ok))

    def get(table: str, pk: str, sk: str | None = None) -> Any:
        key = {"pk": {"S": pk}, **({"sk": {"S": sk}} if sk else {})}
        return ddb.get_item(TableName=table, Key=key).get("Item")

    assert get(PAIRS, "P0", "NEW")["n"] == {"N": "1"}
    assert get(PAIRS, "PNEW", "S0")["n"] == {"N": "2"}
    assert get(PAIRS, "P1", "S1")["n"] == {"N": "12"}
    assert get(PAIRS, "P1", "S1")["extra"] == {"S": "changed"}
    assert get(SINGLES, "K3") is None
    assert get(SINGLES, "K4")["count"] == {"N": "5"}
    assert get(SINGLES, "KNEW")["count"] == {"N": "9"}


def _query_all(client: Any, **kwargs: Any) -> list[Any]:
    items, start = [], None
    while True:
        resp = client.query(**kwargs, **({"ExclusiveStartKey": start} if start else {}))
        items.extend(resp["Items"])
        start = resp.get("LastEvaluatedKey")
        if not start:
            return items


def test_a_query_reads_one_partition_with_moto_semantics(ddb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.dynamodb.models.dynamo_type import DynamoType

    comparisons = [0]
    real_lt = DynamoType.__lt__

    def counting_lt(self: Any, other: Any) -> bool:
        comparisons[0] += 1
        return real_lt(self, other)

    monkeypatch.setattr(DynamoType, "__lt__", counting_lt)
    key = {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "P7"}}}
    forward = ddb.query(TableName=PAIRS, **key)["Items"]
    assert [i["sk"]["S"] for i in forward] == ["S0", "S1", "S2", "S3", "S4"]
    assert comparisons[0] < 30  # the whole table (100 items) sorted would take hundreds
    backward = ddb.query(TableName=PAIRS, ScanIndexForward=False, Limit=1, **key)
    assert [i["sk"]["S"] for i in backward["Items"]] == ["S4"]
    assert backward["LastEvaluatedKey"] == {"pk": {"S": "P7"}, "sk": {"S": "S4"}}
    paged = _query_all(ddb, TableName=PAIRS, Limit=2, **key)
    assert paged == forward
    prefix = ddb.query(
        TableName=PAIRS,
        KeyConditionExpression="pk = :p AND begins_with(sk, :s)",
        ExpressionAttributeValues={":p": {"S": "P7"}, ":s": {"S": "S3"}},
    )["Items"]
    assert [i["n"]["N"] for i in prefix] == ["73"]
    filtered = ddb.query(
        TableName=PAIRS,
        FilterExpression="n > :m",
        ExpressionAttributeValues={":p": {"S": "P7"}, ":m": {"N": "72"}},
        KeyConditionExpression="pk = :p",
    )
    assert [i["sk"]["S"] for i in filtered["Items"]] == ["S3", "S4"]
    assert filtered["ScannedCount"] == 5
    assert (
        ddb.query(
            TableName=PAIRS,
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": "NOPE"}},
        )["Items"]
        == []
    )
    single = ddb.query(
        TableName=SINGLES,
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": "K5"}},
    )["Items"]
    assert single == [{"pk": {"S": "K5"}, "count": {"N": "5"}}]
    # A scan still sees every item.
    assert len(_query_all_scan(ddb, PAIRS)) == 100


def _query_all_scan(client: Any, table: str) -> list[Any]:
    items, start = [], None
    while True:
        resp = client.scan(TableName=table, **({"ExclusiveStartKey": start} if start else {}))
        items.extend(resp["Items"])
        start = resp.get("LastEvaluatedKey")
        if not start:
            return items


def test_concurrent_decisions_on_one_item_leave_exactly_the_winner(ddb: Any) -> None:
    """Twenty threads race to decide one request, each in a transaction with an entry of its own (as the
    Slack endpoint does): exactly one succeeds, and no cancelled transaction undoes its write."""
    import threading

    ddb.put_item(TableName=SINGLES, Item={"pk": {"S": "request"}, "status": {"S": "pending"}})
    won: list[int] = []

    def decide(n: int) -> None:
        try:
            ddb.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": SINGLES,
                            "Key": {"pk": {"S": "request"}},
                            "UpdateExpression": "SET #s = :decided, winner = :me",
                            "ConditionExpression": "#s = :pending",
                            "ExpressionAttributeNames": {"#s": "status"},
                            "ExpressionAttributeValues": {
                                ":decided": {"S": "decided"},
                                ":pending": {"S": "pending"},
                                ":me": {"N": str(n)},
                            },
                        }
                    },
                    {
                        "Put": {
                            "TableName": PAIRS,
                            "Item": {"pk": {"S": "audit"}, "sk": {"S": "1"}, "by": {"N": str(n)}},
                            "ConditionExpression": "attribute_not_exists(sk)",
                        }
                    },
                ]
            )
        except ClientError:
            return
        won.append(n)

    import sys

    threads = [threading.Thread(target=decide, args=(n,)) for n in range(20)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: interleavings show
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert len(won) == 1
    item = ddb.get_item(TableName=SINGLES, Key={"pk": {"S": "request"}})["Item"]
    entry = ddb.get_item(TableName=PAIRS, Key={"pk": {"S": "audit"}, "sk": {"S": "1"}})["Item"]
    assert item["status"]["S"] == "decided" and item["winner"]["N"] == entry["by"]["N"] == str(won[0])
