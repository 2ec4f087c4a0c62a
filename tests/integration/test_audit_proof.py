"""An audit trail that proves itself: `support-agent audit verify` against each kind of tampering, in the
table (MACs, heads on session records, signed digests) and in an export (its signed seal); and personal
data kept out of the chains, so erasing it leaves every chain verifiable.

The attacker here may write and delete anything in the audit and sessions tables, and edit exported
files, but cannot use the KMS keys (the functions may GenerateMac; only operators may Sign).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from support_agent import aws
from support_agent.agent.offline import OfflineProvider
from support_agent.composition import agent_runner
from support_agent.models import Requester, SessionState, Ticket
from support_agent.rules import sessions as session_rules
from support_agent.rules.audit import AuditEntry, draft
from support_agent.rules.audit_proof import DIGESTS, digest_log, export_lines, verify_export, verify_log
from support_agent.rules.dynamodb import DynamoApprovalStore, DynamoSessionCommitter
from support_agent.rules.sessions import SessionChange, session_id_for
from support_agent_local.cli import main

S = SessionState
APPROVER = "slack:U0APPROVER1"


# --- a realistic trail: two sessions, each with lone appends and session commits ---------------------


def refund_session(stack, event_id: str) -> str:
    """A session that asked for a refund, got it approved in Slack, and answered the customer."""
    sid = session_id_for("generic", event_id)
    ticket = Ticket(
        id=f"T-{event_id}",
        source="generic",
        subject="Refund",
        body="Please refund my March invoice.",
        requester=Requester(email="jane.smith@example.com", name="Jane"),
        customer_id="cus_jane",
    )
    sessions, trail = stack.sessions(), stack.audit()
    commits = DynamoSessionCommitter(sessions, DynamoApprovalStore(stack.ref("SessionsTable")), trail)
    sessions.create(session_rules.new_session(sid, ticket, S.QUEUED))
    trail.append(sid, [draft("intake", "tickets:read", "queue/tier-1", "allow", "received")], new_chain=True)
    sessions.transition(sid, S.QUEUED, S.RUNNING)
    trail.append(sid, [draft("agent", "session:claim", f"sessions/{sid}", "n/a", "running")])
    commits.commit(
        SessionChange(
            sid,
            S.RUNNING,
            S.AWAITING_APPROVAL,
            [
                draft("agent", "crm:read", "customers/cus_jane", "allow", "ok"),
                draft("agent", "billing:refund", "customers/cus_jane", "approval", "pending_approval"),
            ],
        )
    )
    trail.append(sid, [draft(APPROVER, "approval:decide", "approvals/apr_1", "n/a", "approve")])
    commits.commit(
        SessionChange(
            sid,
            S.AWAITING_APPROVAL,
            S.RUNNING,
            [draft("agent", "billing:refund", "customers/cus_jane", f"approved by {APPROVER}", "executed")],
        )
    )
    commits.commit(
        SessionChange(
            sid,
            S.RUNNING,
            S.RESPONDED,
            [draft("agent", "tickets:respond", "queue/tier-1", "allow", "responded")],
        )
    )
    return sid


@pytest.fixture
def trail(stack) -> dict[str, Any]:
    """Two sessions' chains, anchored on their session records (no digest yet)."""
    return {"victim": refund_session(stack, "evt_victim"), "other": refund_session(stack, "evt_other")}


def cli(stack, *args: str) -> list[str]:
    return [
        *args,
        "--table",
        stack.ref("AuditTable"),
        "--sessions-table",
        stack.ref("SessionsTable"),
        "--mac-key",
        stack.ref("AuditMacKey"),
        "--signing-key",
        stack.ref("AuditSigningKey"),
    ]


def verify_table(stack, capsys) -> tuple[int, str]:
    code = main(cli(stack, "audit", "verify"))
    return code, capsys.readouterr().out


def digest(stack, capsys) -> None:
    assert main(cli(stack, "audit", "digest")) == 0
    capsys.readouterr()


# --- raw access, as an attacker with the tables but not the keys ----------------------------------------


def db():
    return boto3.client("dynamodb")


def raw_chain(stack, sid: str) -> list[dict[str, Any]]:
    items = db().query(
        TableName=stack.ref("AuditTable"),
        KeyConditionExpression="session_id = :s",
        ExpressionAttributeValues={":s": {"S": sid}},
    )["Items"]
    return sorted(items, key=lambda i: int(i["seq"]["N"]))


def as_entry(item: dict[str, Any]) -> AuditEntry:
    data = {k: next(iter(v.values())) for k, v in item.items()}
    data["seq"] = int(data["seq"])
    data["details"] = json.loads(data.get("details") or "{}")
    return AuditEntry.model_validate(data)


def put_entry(stack, entry: AuditEntry) -> None:
    item = {
        "session_id": {"S": entry.session_id},
        "seq": {"N": str(entry.seq)},
        **{
            k: {"S": str(v)}
            for k, v in entry.model_dump().items()
            if k not in {"session_id", "seq", "details"} and v != ""
        },
        "details": {"S": json.dumps(entry.details, sort_keys=True)},
    }
    db().put_item(TableName=stack.ref("AuditTable"), Item=item)


def delete_entry(stack, sid: str, seq: int) -> None:
    db().delete_item(
        TableName=stack.ref("AuditTable"), Key={"session_id": {"S": sid}, "seq": {"N": str(seq)}}
    )


def set_record_head(stack, sid: str, entry: AuditEntry | None) -> None:
    """Rewrite the session record's head to match the tampered chain (or drop it, as a TTL expiry does)."""
    key = {"pk": {"S": f"SESSION#{sid}"}, "sk": {"S": "SESSION"}}
    if entry is None:
        db().delete_item(TableName=stack.ref("SessionsTable"), Key=key)
        return
    db().update_item(
        TableName=stack.ref("SessionsTable"),
        Key=key,
        UpdateExpression="SET audit_seq = :s, audit_hash = :h, audit_mac = :m",
        ExpressionAttributeValues={
            ":s": {"N": str(entry.seq)},
            ":h": {"S": entry.hash},
            ":m": {"S": entry.mac or "x"},
        },
    )


def rehash(entries: list[AuditEntry], start: int) -> None:
    """Recompute hashes and links from `start` on, as an attacker without the MAC key can."""
    for i in range(start, len(entries)):
        if i:
            entries[i].prev_hash = entries[i - 1].hash
        entries[i].hash = entries[i].compute_hash()


# --- the four kinds of tampering -------------------------------------------------------------------------


def cut_tail(stack, sid: str) -> AuditEntry:
    """Delete the last write (the reply); returns the new last entry."""
    chain = [as_entry(i) for i in raw_chain(stack, sid)]
    delete_entry(stack, sid, chain[-1].seq)
    return chain[-2]


def rewrite_approver(stack, sid: str) -> AuditEntry:
    """Name another approver in the decision entry and recompute every hash after it (MACs kept as they were)."""
    chain = [as_entry(i) for i in raw_chain(stack, sid)]
    at = next(i for i, e in enumerate(chain) if e.action == "approval:decide")
    chain[at].actor = "slack:U0ATTACKER"
    rehash(chain, at)
    for entry in chain[at:]:
        put_entry(stack, entry)
    return chain[-1]


def append_forgery(stack, sid: str) -> AuditEntry:
    """A well-linked entry after the last one, with the last entry's MAC copied onto it."""
    last = as_entry(raw_chain(stack, sid)[-1])
    forged = last.model_copy(
        update={
            "seq": last.seq + 1,
            "prev_hash": last.hash,
            "action": "billing:refund",
            "outcome": "executed",
        }
    )
    forged.hash = forged.compute_hash()
    put_entry(stack, forged)
    return forged


def delete_session(stack, sid: str) -> None:
    for item in raw_chain(stack, sid):
        delete_entry(stack, sid, int(item["seq"]["N"]))


# --- in the table -----------------------------------------------------------------------------------------


def test_an_untouched_trail_verifies_against_records_and_digests(stack, trail, capsys):
    code, out = verify_table(stack, capsys)
    assert code == 0, out
    assert "MACs checked, 2 anchored heads compared" in out
    digest(stack, capsys)
    code, out = verify_table(stack, capsys)
    assert code == 0, out
    assert "4 anchored heads compared" in out
    for sid in trail.values():  # the session record carries the chain's sealed head
        head = stack.audit().anchors(sid)[sid]
        last = stack.audit().entries(sid)[-1]
        assert head == last.head and last.mac
        assert head.seq == 7


def test_cut_tail_in_the_table_is_caught_by_the_session_head(stack, trail, capsys):
    cut_tail(stack, trail["victim"])
    code, out = verify_table(stack, capsys)
    assert code == 1
    assert f"TAMPERED {trail['victim']}#6: tail cut: the session record names head #7" in out
    assert trail["other"] not in out


def test_cut_tail_in_the_table_is_caught_by_a_digest_when_the_record_is_rolled_back(stack, trail, capsys):
    digest(stack, capsys)
    set_record_head(stack, trail["victim"], cut_tail(stack, trail["victim"]))  # a consistent, sealed head
    code, out = verify_table(stack, capsys)
    assert code == 1
    assert "tail cut: digest #1 names head #7, the chain ends at #6" in out
    assert "session record" not in out  # the record alone would not have shown it


def test_rewritten_approver_with_recomputed_hashes_in_the_table(stack, trail, capsys):
    victim = trail["victim"]
    set_record_head(stack, victim, rewrite_approver(stack, victim))
    code, out = verify_table(stack, capsys)
    assert code == 1
    assert f"TAMPERED {victim}#5: MAC invalid: the entry or one before it was rewritten" in out
    assert f"TAMPERED {victim}#7: MAC invalid" in out
    assert trail["other"] not in out


def test_rewrite_with_recomputed_hashes_breaks_a_digests_head(stack, trail, capsys):
    digest(stack, capsys)
    victim = trail["victim"]
    set_record_head(stack, victim, rewrite_approver(stack, victim))
    code, out = verify_table(stack, capsys)
    assert code == 1
    assert f"TAMPERED {victim}#7: entry differs from the head digest #1 names: rewritten" in out


def test_appended_forgery_in_the_table(stack, trail, capsys):
    victim = trail["victim"]
    forged = append_forgery(stack, victim)
    set_record_head(stack, victim, forged)  # the attacker points the session record at the forgery too
    code, out = verify_table(stack, capsys)
    assert code == 1
    assert f"TAMPERED {victim}#8: MAC invalid" in out


def test_appended_forgery_without_a_mac_in_the_table(stack, trail, capsys):
    victim = trail["victim"]
    last = as_entry(raw_chain(stack, victim)[-1])
    forged = last.model_copy(update={"seq": last.seq + 1, "prev_hash": last.hash, "mac": ""})
    forged.hash = forged.compute_hash()
    put_entry(stack, forged)
    code, out = verify_table(stack, capsys)
    assert code == 1
    assert f"TAMPERED {victim}#8: the chain ends in an unsealed entry" in out


def test_deleted_session_in_the_table_is_caught_by_its_record(stack, trail, capsys):
    delete_session(stack, trail["victim"])
    code, out = verify_table(stack, capsys)
    assert code == 1
    assert f"TAMPERED {trail['victim']}: session deleted: the session record names head #7" in out


def test_deleted_session_and_record_are_caught_by_a_digest(stack, trail, capsys):
    digest(stack, capsys)
    delete_session(stack, trail["victim"])
    set_record_head(stack, trail["victim"], None)
    code, out = verify_table(stack, capsys)
    assert code == 1
    assert f"TAMPERED {trail['victim']}: session deleted: digest #1 names head #7" in out


def test_digests_are_chained_and_signed(stack, trail, capsys):
    digest(stack, capsys)
    refund_session(stack, "evt_later")
    digest(stack, capsys)
    digests = stack.audit().digests()
    assert [d.number for d in digests] == [1, 2]
    assert set(digests[0].heads) == set(trail.values())
    assert set(digests[1].heads) == {session_id_for("generic", "evt_later")}  # only what changed
    assert digests[1].previous == digests[0].fingerprint()
    # A forged digest (the functions may PutItem here, but cannot Sign) and a deleted one are both reported.
    forged = digests[1].model_copy(
        update={"number": 3, "heads": {trail["victim"]: digests[0].heads[trail["victim"]]}}
    )
    stack.audit().put_digest(forged)
    db().delete_item(TableName=stack.ref("AuditTable"), Key={"session_id": {"S": DIGESTS}, "seq": {"N": "1"}})
    code, out = verify_table(stack, capsys)
    assert code == 1
    assert "TAMPERED #digest#1: digest missing: deleted" in out
    assert "TAMPERED #digest#3: digest signature invalid: forged or changed" in out
    assert main(cli(stack, "audit", "digest")) == 1  # no digest vouches for a broken digest chain


def test_a_digest_copy_kept_outside_shows_the_latest_digest_deleted(stack, trail, capsys, tmp_path):
    copy = tmp_path / "digests.jsonl"
    assert main([*cli(stack, "audit", "digest"), "--out", str(copy)]) == 0
    db().delete_item(TableName=stack.ref("AuditTable"), Key={"session_id": {"S": DIGESTS}, "seq": {"N": "1"}})
    capsys.readouterr()
    assert main(cli(stack, "audit", "verify")) == 0  # the table alone cannot tell
    capsys.readouterr()
    assert main([*cli(stack, "audit", "verify"), "--digest-file", str(copy)]) == 1
    assert "digest deleted from the table (a copy exists)" in capsys.readouterr().out


def test_verify_refuses_to_run_without_the_mac_key(stack, trail, monkeypatch):
    monkeypatch.delenv("AUDIT_MAC_KEY_ID", raising=False)
    with pytest.raises(SystemExit, match="MAC key"):
        main(["audit", "verify", "--table", stack.ref("AuditTable"), "--signing-key", "k"])


# --- in an export --------------------------------------------------------------------------------------


@pytest.fixture
def export(stack, trail, capsys, tmp_path) -> Path:
    """`audit export` of the whole trail, as a file."""
    assert main(cli(stack, "audit", "export")) == 0
    path = tmp_path / "audit.jsonl"
    path.write_text(capsys.readouterr().out)
    return path


def verify_file(stack, capsys, path: Path) -> tuple[int, str]:
    code = main(cli(stack, "audit", "verify", "--file", str(path)))
    return code, capsys.readouterr().out


def lines_of(path: Path) -> tuple[list[AuditEntry], str]:
    *entries, seal = path.read_text().splitlines()
    return [AuditEntry.model_validate_json(line) for line in entries], seal


def write(path: Path, entries: list[AuditEntry], seal: str | None) -> None:
    path.write_text("".join(e.model_dump_json() + "\n" for e in entries) + (seal + "\n" if seal else ""))


def test_an_untouched_export_verifies_with_its_seal(stack, trail, export, capsys):
    code, out = verify_file(stack, capsys, export)
    assert code == 0, out
    assert "14 entries in 2 session(s) verified (MACs checked, 2 anchored heads compared)" in out
    seal = json.loads(export.read_text().splitlines()[-1])["seal"]
    assert seal["count"] == 14 and seal["sessions"] == sorted(trail.values())
    assert set(seal["heads"]) == set(trail.values()) and base64.b64decode(seal["signature"])


def test_cut_tail_in_an_export(stack, trail, export, capsys):
    entries, seal = lines_of(export)
    victim = trail["victim"]
    write(export, [e for e in entries if not (e.session_id == victim and e.seq == 7)], seal)
    code, out = verify_file(stack, capsys, export)
    assert code == 1
    assert "the seal counts 14 entries, the file holds 13" in out
    assert f"TAMPERED {victim}#6: tail cut: the seal names head #7, the chain ends at #6" in out


def test_export_cut_before_its_seal(stack, trail, export, capsys):
    entries, _seal = lines_of(export)
    write(export, entries[:-3], None)
    code, out = verify_file(stack, capsys, export)
    assert code == 1
    assert "TAMPERED export: no seal: the export was cut or never sealed" in out


def test_rewritten_approver_with_recomputed_hashes_in_an_export(stack, trail, export, capsys):
    entries, seal = lines_of(export)
    victim = trail["victim"]
    chain = [e for e in entries if e.session_id == victim]
    at = next(i for i, e in enumerate(chain) if e.action == "approval:decide")
    chain[at].actor = "slack:U0ATTACKER"
    rehash(chain, at)
    write(export, entries, seal)  # the chain's entries were changed in place
    code, out = verify_file(stack, capsys, export)
    assert code == 1
    assert f"TAMPERED {victim}#5: MAC invalid" in out
    assert f"TAMPERED {victim}#7: entry differs from the head the seal names: rewritten" in out


def test_rewritten_seal_in_an_export(stack, trail, export, capsys):
    entries, seal = lines_of(export)
    victim = trail["victim"]
    chain = [e for e in entries if e.session_id == victim]
    chain[4].actor = "slack:U0ATTACKER"
    rehash(chain, 4)
    data = json.loads(seal)
    data["seal"]["heads"][victim] = [chain[-1].seq, chain[-1].hash, chain[-1].mac]  # re-seal without the key
    write(export, entries, json.dumps(data))
    code, out = verify_file(stack, capsys, export)
    assert code == 1
    assert "TAMPERED export: seal signature invalid" in out


def test_appended_forgery_in_an_export(stack, trail, export, capsys):
    entries, seal = lines_of(export)
    victim = trail["victim"]
    last = [e for e in entries if e.session_id == victim][-1]
    forged = last.model_copy(
        update={"seq": last.seq + 1, "prev_hash": last.hash, "outcome": "refund executed"}
    )
    forged.hash = forged.compute_hash()
    write(export, [*entries, forged], seal)
    code, out = verify_file(stack, capsys, export)
    assert code == 1
    assert "the seal counts 14 entries, the file holds 15" in out
    assert f"TAMPERED {victim}#8: MAC invalid" in out
    assert f"TAMPERED {victim}#8: 1 entry after the head the seal names: appended" in out


def test_deleted_session_in_an_export(stack, trail, export, capsys):
    entries, seal = lines_of(export)
    write(export, [e for e in entries if e.session_id != trail["victim"]], seal)
    code, out = verify_file(stack, capsys, export)
    assert code == 1
    assert f"TAMPERED {trail['victim']}: session deleted: the seal names head #7, no entry is left" in out


def test_export_refuses_to_seal_a_trail_that_does_not_verify(stack, trail, capsys):
    cut_tail(stack, trail["victim"])
    assert main(cli(stack, "audit", "export")) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "tail cut" in captured.err


def test_library_export_and_verify_round_trip(stack, trail):
    log, signer = stack.audit(), stack.audit_signer()
    written, report = digest_log(log, signer)
    assert report.ok and len(written) == 1
    lines = export_lines(log.entries(trail["other"]), signer, source="test")
    assert verify_export(lines, key=log.key, signer=signer).ok
    assert verify_log(log, trail["other"], signer=signer).anchors_checked == 2


# --- personal data --------------------------------------------------------------------------------------


def scan(table: str) -> list[dict[str, Any]]:
    return db().scan(TableName=table)["Items"]


def test_emails_never_enter_a_chain_and_erasure_leaves_every_chain_verifiable(stack, capsys):
    email = "jane.smith@example.com"
    sid = session_id_for("generic", "evt_by_email")
    ticket = Ticket(
        id="T-by-email",
        source="generic",
        subject="Where is my order?",
        body=f"Where is my order? Reply to {email} please.",
        requester=Requester(email=email, name="Jane Smith"),
    )
    stack.sessions().create(session_rules.new_session(sid, ticket, S.QUEUED))
    with stack.environment_of("AgentStepFunction"):
        result = agent_runner(OfflineProvider()).start(sid)
        # An adapter error that quotes the address lands in the details: scrubbed as well.
        stack.audit().append(
            sid, [draft("agent", "crm:read", "customers/x", "allow", "failed", {"error": f"no {email}"})]
        )
    assert result.outcome == "respond"

    # The run names the bound record, never the address; an address that reaches the trail anyway (a
    # resource or an adapter's error) is replaced by a keyed pseudonym, the same one for the same mailbox.
    entries = stack.audit().entries(sid)
    assert any(e.action == "identity:bind" and e.resource == "customers/cus_jane" for e in entries)
    (lookup,) = stack.audit().append(sid, [draft("a", "crm:read", f"customers/by-email/{email}", "d", "o")])
    pseudonym = lookup.resource.removeprefix("customers/by-email/")
    assert len(pseudonym) == 32 and int(pseudonym, 16) >= 0
    assert entries[-1].details["error"] == f"no email:{pseudonym}"
    audit_items = json.dumps(scan(stack.ref("AuditTable"))).lower()
    assert email not in audit_items and "jane smith" not in audit_items
    assert (
        stack.audit()
        .append(sid, [draft("a", "crm:read", f"customers/by-email/{email.upper()}", "d", "o")])[0]
        .resource
        == lookup.resource
    )

    digest(stack, capsys)
    # Erasure: the customer's personal data goes from the session record (which keeps its chain's head)
    # and from the CRM; the chains are not touched.
    redacted = Ticket(
        id="T-by-email",
        source="generic",
        subject="",
        body="[erased]",
        requester=Requester(email="erased@erased.invalid"),
    )
    db().update_item(
        TableName=stack.ref("SessionsTable"),
        Key={"pk": {"S": f"SESSION#{sid}"}, "sk": {"S": "SESSION"}},
        UpdateExpression="SET ticket = :t, transcript = :e, replies = :e REMOVE #requester",
        ExpressionAttributeNames={"#requester": "requester"},
        ExpressionAttributeValues={
            ":t": aws.to_item({"t": redacted.model_dump(mode="json")})["t"],
            ":e": {"L": []},
        },
    )
    for item in scan(stack.ref("EmbeddedDataTable")):
        if email in json.dumps(item).lower():
            db().delete_item(
                TableName=stack.ref("EmbeddedDataTable"), Key={"pk": item["pk"], "sk": item["sk"]}
            )
    assert email not in json.dumps(scan(stack.ref("SessionsTable"))).lower()

    code, out = verify_table(stack, capsys)
    assert code == 0, out
    assert main(cli(stack, "audit", "export", "--session", sid)) == 0
    exported = capsys.readouterr().out.splitlines()
    assert email not in "\n".join(exported).lower()
    assert verify_export(exported, key=stack.audit().key, signer=stack.audit_signer()).ok


def test_lone_appends_by_writers_with_stale_heads_keep_the_record_on_the_chains_last_entry(stack):
    """Two writers (two Lambda instances), each caching the head it last saw, append in turn: each append
    moves the session record's head in its own transaction, a stale cache costs a refused write and a
    read, and the record always names the chain's last entry. A chain whose session record is gone (an
    erased session) still takes entries, and no record is created for it."""
    sid = session_id_for("generic", "stale-heads")
    ticket = Ticket(
        id="T-h", source="generic", subject="s", body="b", requester=Requester(email="a@example.com")
    )
    stack.sessions().create(session_rules.new_session(sid, ticket, S.QUEUED))
    writers = [stack.audit(), stack.audit()]
    for n in range(6):
        writers[n % 2].append(sid, [draft("agent", "test:append", f"r/{n}", "n/a", "ok")])
        last = stack.audit().entries(sid)[-1]
        assert stack.audit().anchors(sid) == {sid: last.head} and last.seq == n + 1
    assert verify_log(stack.audit(), sid).ok
    gone = session_id_for("generic", "erased")
    written = stack.audit().append(gone, [draft("agent", "test:append", "r", "n/a", "ok")], new_chain=True)
    assert [e.seq for e in written] == [1] and stack.audit().anchors(gone) == {}
    assert stack.sessions().get(gone) is None
