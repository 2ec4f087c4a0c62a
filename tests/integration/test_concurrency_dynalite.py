"""Exactness under concurrency, against dynalite (a DynamoDB implementation whose conditional writes are
atomic; moto's are not under threads, so a concurrency test against moto would prove nothing).

dynalite comes from npm (`make install` puts it in .tools/); without it these tests are skipped.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from pathlib import Path
from typing import Any

import boto3
import pytest
from support_agent.intake.service import IntakeService
from support_agent.messaging import Queue
from support_agent.models import Approval, Decision, Escalation, Requester, SessionState, Ticket
from support_agent.rules.approvals import AlreadyDecided
from support_agent.rules.audit import verify
from support_agent.rules.dynamodb import (
    DynamoApprovalStore,
    DynamoAuditLog,
    DynamoDailyBudget,
    DynamoSessionStore,
    DynamoTokenBudget,
)
from support_agent.rules.policy import load_policy
from support_agent.rules.sessions import new_session
from support_agent_local.template import Resolver, load_template

ROOT = Path(__file__).resolve().parents[2]
DYNALITE = ROOT / ".tools" / "node_modules" / ".bin" / "dynalite"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def dynalite() -> Iterator[Any]:
    if not DYNALITE.exists() or shutil.which("node") is None:
        pytest.skip("dynalite is not installed (make install runs npm for it)")
    port = _free_port()
    proc = subprocess.Popen(
        [str(DYNALITE), "--port", str(port), "--createTableMs", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    client = boto3.client(
        "dynamodb",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            client.list_tables()
            break
        except Exception:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.1)
    resolver = Resolver(load_template())
    for logical in ("BudgetsTable", "SessionsTable", "AuditTable"):
        props = resolver.resolve(load_template()["Resources"][logical]["Properties"])
        indexes = (
            {"GlobalSecondaryIndexes": props["GlobalSecondaryIndexes"]}
            if "GlobalSecondaryIndexes" in props
            else {}
        )
        client.create_table(
            TableName=logical,
            AttributeDefinitions=props["AttributeDefinitions"],
            KeySchema=props["KeySchema"],
            BillingMode=props["BillingMode"],
            **indexes,
        )
        client.get_waiter("table_exists").wait(
            TableName=logical, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50}
        )
    yield client
    proc.kill()
    proc.wait()


def test_daily_budget_exact_under_concurrency(dynalite):
    budget = DynamoDailyBudget("BudgetsTable", client=dynalite)
    with ThreadPoolExecutor(max_workers=16) as pool:
        slots = list(pool.map(lambda _: budget.take(25, UTC), range(80)))
    assert sum(s.granted for s in slots) == 25
    assert budget.used(UTC) == 25
    assert sorted(s.used for s in slots if s.granted) == list(range(1, 26))


def test_first_decision_wins_under_concurrency(dynalite):
    repo = DynamoApprovalStore("SessionsTable", client=dynalite)
    approval = Approval(
        approval_id="apr_race",
        session_id="s",
        tool="issue_refund",
        args_hash="h",
        channel="slack:#x",
        escalation=Escalation(ticket_id="T"),
    )
    dynalite.put_item(**repo.put_item(approval)["Put"])  # dynalite has no TransactWriteItems

    def decide(i: int) -> str:
        try:
            repo.decide("apr_race", Decision(kind="approve", by=f"U{i}"))
        except AlreadyDecided:
            return "lost"
        return "won"

    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(decide, range(10)))
    assert results.count("won") == 1


def test_token_budget_exact_under_concurrency(dynalite):
    sessions = DynamoSessionStore("SessionsTable", client=dynalite)
    ticket = Ticket(
        id="T", source="generic", subject="s", body="b", requester=Requester(email="a@example.com")
    )
    sessions.create(new_session("s-tokens", ticket, SessionState.QUEUED))
    tokens = DynamoTokenBudget("SessionsTable", client=dynalite)

    def call(_: int) -> bool:
        # Forty runs reserve 1,000 each at once: exactly ten fit in 10,000, never one more.
        return tokens.reserve("s-tokens", 1000, 10_000)

    with ThreadPoolExecutor(max_workers=16) as pool:
        granted = list(pool.map(call, range(40)))
    assert granted.count(True) == 10
    assert sessions.get("s-tokens").tokens_committed == 10_000


class _Secrets:
    def get_json(self, name: str) -> dict[str, str]:
        return {"generic": "burst-secret", "zendesk": "burst-secret"}


class _NoQueue(Queue):
    def send(self, message: Any) -> None:
        raise AssertionError("a refused webhook reached the queue")


def test_a_burst_of_forged_webhooks_is_all_401_with_one_audit_entry_each(dynalite):
    """240 forged deliveries from 24 threads (24 warm instances): every one answered 401, none 500, and
    each leaves exactly one audit entry in a chain of its own, so no append can lose a race. (With one
    shared chain per day, 76-86 of 240 answered 500: "lost the race 8 times".)"""

    def instance(i: int) -> list[int]:
        # One service per thread, as each Lambda instance builds its own (its audit log caches chain heads).
        sessions = DynamoSessionStore("SessionsTable", client=dynalite)
        service = IntakeService(
            policy=load_policy(ROOT / "policies" / "acme-support.yaml"),
            sessions=sessions,
            budget=DynamoDailyBudget("BudgetsTable", sessions, client=dynalite),
            audit=DynamoAuditLog("AuditTable", client=dynalite),
            queue=_NoQueue(),
            secrets=_Secrets(),
            webhook_secret_name="webhooks",
        )
        headers = {"X-Signature": "sha256=" + "0" * 64, "X-Signature-Timestamp": str(int(time.time()))}
        return [
            service.receive("generic", headers, b'{"event_id": "forged"}', f"req-{i}-{n}").status
            for n in range(10)
        ]

    before = [dynalite.scan(TableName=t, Select="COUNT")["Count"] for t in ("SessionsTable", "BudgetsTable")]
    with ThreadPoolExecutor(max_workers=24) as pool:
        statuses = [status for batch in pool.map(instance, range(24)) for status in batch]
    assert statuses == [401] * 240
    audit = DynamoAuditLog("AuditTable", client=dynalite)
    refusals = [e for e in audit.all_entries() if e.session_id.startswith("intake-rejection-")]
    assert len(refusals) == 240
    assert len({e.session_id for e in refusals}) == 240 and all(e.seq == 1 for e in refusals)
    assert {e.details["request_id"] for e in refusals} == {
        f"req-{i}-{n}" for i in range(24) for n in range(10)
    }
    assert verify(audit).ok
    assert [
        dynalite.scan(TableName=t, Select="COUNT")["Count"] for t in ("SessionsTable", "BudgetsTable")
    ] == before
