from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from support_agent import clock
from support_agent.models import SessionState, Ticket
from support_agent.rules.dynamodb import DynamoDailyBudget, DynamoSessionStore, DynamoTokenBudget
from support_agent.rules.sessions import SessionExists, TransitionRefused, new_session, session_id_for

TICKET = Ticket(id="T-1", source="generic", subject="s", body="b", requester={"email": "a@example.com"})


def test_daily_budget_stops_exactly_at_limit(stack):
    budget = DynamoDailyBudget(stack.ref("BudgetsTable"))
    results = [budget.take(3, UTC) for _ in range(5)]
    assert [r.granted for r in results] == [True, True, True, False, False]
    assert [r.used for r in results[:3]] == [1, 2, 3]
    assert budget.used(UTC) == 3


def test_daily_budget_day_follows_time_zone(stack, monkeypatch):
    # 23:30 UTC on the 1st is already the 2nd in Tokyo: a separate counter.
    monkeypatch.setattr(clock, "now", lambda: datetime(2026, 3, 1, 23, 30, tzinfo=UTC))
    budget = DynamoDailyBudget(stack.ref("BudgetsTable"))
    assert budget.take(1, UTC).day == "2026-03-01"
    tokyo = budget.take(1, ZoneInfo("Asia/Tokyo"))
    assert tokyo.granted and tokyo.day == "2026-03-02"


def test_session_create_is_the_duplicate_check(stack):
    repo = DynamoSessionStore(stack.ref("SessionsTable"))
    sid = session_id_for("generic", "evt_1")
    assert sid == session_id_for("generic", "evt_1") != session_id_for("zendesk", "evt_1")
    repo.create(new_session(sid, TICKET, SessionState.QUEUED))
    with pytest.raises(SessionExists) as dup:
        repo.create(new_session(sid, TICKET, SessionState.QUEUED))
    assert dup.value.session.session_id == sid


def test_transitions_are_conditional(stack):
    repo = DynamoSessionStore(stack.ref("SessionsTable"))
    repo.create(new_session("s1", TICKET, SessionState.QUEUED))
    running = repo.transition("s1", SessionState.QUEUED, SessionState.RUNNING)
    assert running.state is SessionState.RUNNING
    with pytest.raises(TransitionRefused):  # a redelivered start message
        repo.transition("s1", SessionState.QUEUED, SessionState.RUNNING)
    repo.transition("s1", SessionState.RUNNING, SessionState.AWAITING_APPROVAL, approval_id="apr_1")
    back = repo.transition("s1", SessionState.AWAITING_APPROVAL, SessionState.RUNNING)
    assert back.approval_id == "apr_1"
    done = repo.transition("s1", SessionState.RUNNING, SessionState.RESPONDED, outcome="respond")
    assert done.outcome == "respond"
    with pytest.raises(ValueError, match="not an allowed transition"):
        repo.transition("s1", SessionState.RESPONDED, SessionState.RUNNING)
    with pytest.raises(TransitionRefused):
        repo.transition("missing", SessionState.QUEUED, SessionState.RUNNING)


def test_tokens_are_reserved_within_the_limit_and_settled_by_the_outcome(stack):
    repo = DynamoSessionStore(stack.ref("SessionsTable"))
    repo.create(new_session("s1", TICKET, SessionState.QUEUED))
    tokens = DynamoTokenBudget(stack.ref("SessionsTable"))
    assert tokens.reserve("s1", 600, 1000)
    assert not tokens.reserve("s1", 500, 1000)  # 600 reserved: 1,100 would pass the limit
    assert not tokens.reserve("s1", 2000, 1000)
    # The outcome's commit settles: both counters become what the run used (450 of its 600).
    repo.transition("s1", SessionState.QUEUED, SessionState.RUNNING)
    repo.transition("s1", SessionState.RUNNING, SessionState.RESPONDED, tokens_used=450, tokens_committed=450)
    assert tokens.reserve("s1", 550, 1000)  # 450 used + 550 = exactly the limit
    assert not tokens.reserve("s1", 1, 1000)
    stored = repo.get("s1")
    assert (stored.tokens_used, stored.tokens_committed) == (450, 1000)
