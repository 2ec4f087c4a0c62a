"""The provable audit trail on the in-memory fakes: sealed chains, anchored heads, digests and seals."""

from __future__ import annotations

import json

from support_agent.agent.offline import OfflineProvider
from support_agent.rules.audit import Head, draft, verify
from support_agent.rules.audit_keys import LocalMacKey, LocalSigner
from support_agent.rules.audit_proof import digest_log, export_lines, verify_export
from support_agent.rules.policy import load_policy
from support_agent_local.memory import MemoryAuditLog, MemoryWorld

from tests.helpers import ROOT

POLICY = load_policy(ROOT / "policies" / "acme-support.yaml")
EMAIL = "jane.smith@example.com"


def test_a_run_leaves_a_sealed_anchored_chain_without_the_requesters_email():
    world = MemoryWorld(POLICY)
    sid = world.ticket("Where is my order? It has been a week.", email=EMAIL, subject="Order status")
    assert world.runner(OfflineProvider()).start(sid).outcome == "respond"
    entries = world.audit.entries(sid)
    assert EMAIL not in json.dumps([e.model_dump() for e in entries])
    # The requester is bound to a customer record; the trail names the record, never the address.
    assert any(e.action == "identity:bind" and e.resource == "customers/cus_jane" for e in entries)
    assert world.audit.anchors(sid)[sid] == entries[-1].head and entries[-1].mac
    report = verify(world.audit, sid, signer=LocalSigner())
    assert report.ok and report.macs_checked and report.anchors_checked == 1


def test_digest_and_seal_catch_a_cut_tail_in_memory():
    log, signer = MemoryAuditLog(), LocalSigner()
    for i in range(3):
        log.append("s1", [draft("t", f"a:{i}", "r", "d", "o")])
    written, report = digest_log(log, signer)
    assert report.ok and [d.number for d in written] == [1]
    lines = export_lines(log.all_entries(), signer, source="memory")
    assert verify_export(lines, key=log.key, signer=signer).ok
    # Cut the tail, and roll the record's head back with it: only the digest still knows.
    log.chains["s1"].pop()
    log.heads["s1"] = log.chains["s1"][-1].head
    problems = [str(p) for p in verify(log, signer=signer).problems]
    assert problems == ["s1#2: tail cut: digest #1 names head #3, the chain ends at #2"]
    assert not verify_export(lines[:2] + lines[3:], key=log.key, signer=signer).ok


def test_another_key_does_not_verify_the_seals():
    log = MemoryAuditLog()
    log.append("s1", [draft("t", "a:b", "r", "d", "o")])
    other = MemoryAuditLog(key=LocalMacKey(b"another key"))
    other.chains = log.chains
    problems = [p.reason for p in verify(other).problems]
    assert problems == ["MAC invalid: the entry or one before it was rewritten"]


def test_without_a_key_addresses_are_redacted_and_nothing_is_sealed():
    log = MemoryAuditLog()
    log.key = None
    (entry,) = log.append("s1", [draft("t", "a:b", f"customers/by-email/{EMAIL}", "d", "o", {"to": EMAIL})])
    assert entry.resource == "customers/by-email/redacted" and entry.details == {"to": "email:redacted"}
    assert entry.mac == "" and entry.head == Head(1, entry.hash)
