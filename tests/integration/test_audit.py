from __future__ import annotations

import itertools
import json

import boto3
from support_agent.rules.audit import draft, scrub, verify
from support_agent.rules.dynamodb import DynamoAuditLog


def trail(stack) -> DynamoAuditLog:
    return DynamoAuditLog(stack.ref("AuditTable"))


def add(
    t: DynamoAuditLog,
    session: str,
    *,
    actor: str,
    action: str,
    resource: str,
    decision: str,
    outcome: str,
    details=None,
):
    return t.append(session, [draft(actor, action, resource, decision, outcome, details)])[-1]


def fill(t: DynamoAuditLog, session="s1", n=5):
    for i in range(n):
        add(t, session, actor="test", action=f"a:{i}", resource="r", decision="allow", outcome="ok")


def raw_items(stack, session="s1"):
    client = boto3.client("dynamodb")
    return client.query(
        TableName=stack.ref("AuditTable"),
        KeyConditionExpression="session_id = :s",
        ExpressionAttributeValues={":s": {"S": session}},
    )["Items"]


def test_chain_verifies_and_links(stack):
    t = trail(stack)
    fill(t)
    fill(t, "s2", 3)
    entries = t.entries("s1")
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    report = verify(t)
    assert report.ok and report.entries == 8 and report.sessions == 2


def test_a_second_writer_continues_the_chain(stack):
    first, second = trail(stack), trail(stack)
    fill(first, n=2)
    add(second, "s1", actor="other", action="x:y", resource="r", decision="d", outcome="o")
    add(first, "s1", actor="first", action="x:z", resource="r", decision="d", outcome="o")  # stale head
    assert [e.seq for e in first.entries("s1")] == [1, 2, 3, 4]
    assert verify(first, "s1").ok


def test_changed_entry_detected(stack):
    t = trail(stack)
    fill(t)
    item = raw_items(stack)[2]
    item["outcome"] = {"S": "refund executed"}
    boto3.client("dynamodb").put_item(TableName=stack.ref("AuditTable"), Item=item)
    report = verify(t)
    assert not report.ok
    assert any(p.seq == 3 and "changed" in p.reason for p in report.problems)


def test_removed_entry_detected(stack):
    t = trail(stack)
    fill(t)
    boto3.client("dynamodb").delete_item(
        TableName=stack.ref("AuditTable"), Key={"session_id": {"S": "s1"}, "seq": {"N": "2"}}
    )
    report = verify(t)
    assert any("entry 2 is missing" in p.reason for p in report.problems)


def test_reordered_entries_detected(stack):
    t = trail(stack)
    fill(t)
    items = {int(i["seq"]["N"]): i for i in raw_items(stack)}
    items[2]["seq"], items[3]["seq"] = {"N": "3"}, {"N": "2"}
    client = boto3.client("dynamodb")
    for item in (items[2], items[3]):
        client.put_item(TableName=stack.ref("AuditTable"), Item=item)
    report = verify(t)
    assert not report.ok
    assert {p.seq for p in report.problems} & {2, 3}


def test_rehashed_forgery_still_breaks_the_chain(stack):
    # An attacker who recomputes the changed entry's own hash still breaks the next link.
    t = trail(stack)
    fill(t)
    entry = t.entries("s1")[1]
    entry.outcome = "forged"
    entry.hash = entry.compute_hash()
    item = dict(raw_items(stack)[1].items())
    item["outcome"], item["hash"] = {"S": "forged"}, {"S": entry.hash}
    boto3.client("dynamodb").put_item(TableName=stack.ref("AuditTable"), Item=item)
    report = verify(t)
    assert any(p.seq == 3 and "chain broken" in p.reason for p in report.problems)


def test_secrets_and_bodies_are_scrubbed(stack):
    t = trail(stack)
    add(
        t,
        "s1",
        actor="t",
        action="a:b",
        resource="r",
        decision="d",
        outcome="o",
        details={
            "api_key": "sk-live",
            "body": "raw ticket text",
            "nested": {"signature": "abc"},
            "n": "x" * 900,
        },
    )
    stored = json.loads(raw_items(stack)[0]["details"]["S"])
    assert stored["api_key"] == "[redacted]" and stored["body"] == "[redacted]"
    assert stored["nested"]["signature"] == "[redacted]"
    assert len(stored["n"]) < 510
    assert scrub({"ok": 1}) == {"ok": 1}


def test_a_writer_with_a_stale_head_never_overwrites_an_entry(stack):
    # Given a chain with one entry, and a second writer that believes the chain is empty
    first = trail(stack)
    fill(first, n=1)
    original = first.entries("s1")[0]
    late = trail(stack)
    # When the second writer appends from its stale head
    late.append("s1", [draft("late", "x:y", "r", "d", "o")], new_chain=True)
    # Then its conditional put lost, it re-read the head, and the first entry is as it was
    entries = first.entries("s1")
    assert entries[0] == original
    assert [(e.seq, e.actor) for e in entries] == [(1, "test"), (2, "late")]
    assert verify(first, "s1").ok
