"""The Zendesk adapter over real HTTP against the local stand-in: no double posts, retries within the
deadline, loop guards, requester context, Help Center, and one agent run end to end."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support_agent.adapters.http import InvocationDeadline, RetryPolicy, fixed_budget
from support_agent.adapters.ports import AdapterError
from support_agent.adapters.zendesk import (
    AGENT_AUTHOR,
    ANSWERED_TAG,
    ESCALATED_TAG,
    ZendeskHelpCenter,
    ZendeskTickets,
    key_tag,
)
from support_agent_local.fake_zendesk import FakeZendesk

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, margin=0.0)


@pytest.fixture
def fake() -> Iterator[FakeZendesk]:
    with FakeZendesk() as zendesk:
        yield zendesk


@pytest.fixture
def sleeps() -> list[float]:
    return []


def adapter(fake: FakeZendesk, sleeps: list[float] | None = None, **options: Any) -> ZendeskTickets:
    options.setdefault("remaining", fixed_budget(10))
    options.setdefault("retry", FAST)
    if sleeps is not None:
        options["sleep"] = sleeps.append
    return ZendeskTickets(fake.url, fake.email, fake.token, group_ids={"tier-2-humans": 42}, **options)


@pytest.fixture
def ticket(fake: FakeZendesk) -> str:
    jane = fake.create_user("Jane Smith", "jane.smith@example.com")
    return fake.create_ticket("Where is my order?", "ORD-5001 has not arrived.", jane)


def replies(fake: FakeZendesk, tid: str) -> list[str]:
    return [c["body"] for c in fake.comments(tid, public=True) if c["author_id"] == int(fake.agent_id)]


def puts(fake: FakeZendesk) -> int:
    return sum(1 for method, _ in fake.requests if method == "PUT")


# --- no double posts ---------------------------------------------------------------------------------------


def test_a_redelivered_step_posts_nothing_twice(fake, ticket):
    adapter(fake).respond(ticket, "It ships tomorrow.", "note", "pending", "sess-1-reply")
    before = puts(fake)
    # The message comes back to a fresh container: a new adapter, the same key.
    adapter(fake).respond(ticket, "It ships tomorrow.", "note", "pending", "sess-1-reply")
    assert replies(fake, ticket) == ["It ships tomorrow."]
    assert puts(fake) == before  # it only read the ticket
    assert key_tag("sess-1-reply") in fake.ticket(ticket)["tags"]


def test_an_update_applied_but_never_acknowledged_is_not_sent_again(fake, ticket):
    fake.drop_after_apply = 1  # Zendesk applies the reply, the connection dies before the answer
    adapter(fake).respond(ticket, "It ships tomorrow.", "note", "solved", "sess-1-reply")
    assert replies(fake, ticket) == ["It ships tomorrow."]
    assert [c["body"] for c in fake.comments(ticket, public=False)] == ["note"]
    assert fake.ticket(ticket)["status"] == "solved"


def test_a_crash_after_the_call_and_before_our_own_write_is_safe_to_retry(fake, ticket):
    class Crash(Exception):
        pass

    def step(tickets: ZendeskTickets, crash: bool) -> None:
        tickets.respond(ticket, "It ships tomorrow.", "note", "solved", "sess-1-reply")
        if crash:  # the session transition (our own write) never happens
            raise Crash

    with pytest.raises(Crash):
        step(adapter(fake), crash=True)
    step(adapter(fake), crash=False)  # the retried step
    assert replies(fake, ticket) == ["It ships tomorrow."]
    assert len(fake.comments(ticket, public=False)) == 1


def test_a_5xx_on_the_update_is_checked_before_sending_again(fake, ticket, sleeps):
    fake.fail_puts = [502]  # not applied
    adapter(fake, sleeps).respond(ticket, "It ships tomorrow.", "", "solved", "sess-1-reply")
    assert replies(fake, ticket) == ["It ships tomorrow."]
    assert len(sleeps) == 1


def test_a_parallel_try_that_posted_first_wins(fake, ticket):
    def parallel(tid: int) -> None:  # the other try's update lands between our read and our write
        fake._update(
            fake.tickets[tid],
            {
                "ticket": {
                    "comment": {"body": "It ships tomorrow.", "public": True},
                    "additional_tags": [ANSWERED_TAG, key_tag("sess-1-reply")],
                }
            },
        )

    fake.before_update = parallel
    adapter(fake).respond(ticket, "It ships tomorrow.", "", "solved", "sess-1-reply")
    assert replies(fake, ticket) == ["It ships tomorrow."]


def test_a_person_commenting_meanwhile_does_not_lose_our_reply(fake, ticket):
    dana = fake.create_user("Dana", "dana@acme.example", role="agent")
    fake.before_update = lambda tid: fake.reply_as(str(tid), dana, "Looking into it.", public=False)
    adapter(fake).respond(ticket, "It ships tomorrow.", "", "solved", "sess-1-reply")
    assert replies(fake, ticket) == ["It ships tomorrow."]
    assert [c["body"] for c in fake.comments(ticket, public=False)] == ["Looking into it."]


def test_reply_and_handoff_tags(fake, ticket):
    zd = adapter(fake)
    zd.respond(ticket, "It ships tomorrow.", "note", "pending", "s-reply")
    assert ANSWERED_TAG in fake.ticket(ticket)["tags"]
    zd.add_note(ticket, "Handed to people: refund over the limit.", "s-handoff")
    zd.assign(ticket, "tier-2-humans")
    state = fake.ticket(ticket)
    assert ESCALATED_TAG in state["tags"] and state["group_id"] == 42
    with pytest.raises(AdapterError, match="no group or agent"):
        zd.assign(ticket, "nobody")


# --- retries, deadline and safe errors ---------------------------------------------------------------------


def test_429_waits_retry_after(fake, ticket, sleeps):
    fake.fail_next, fake.retry_after = [429, 429], "2"
    assert adapter(fake, sleeps).get_state(ticket)["status"] == "new"
    assert sleeps == [2.0, 2.0]


def test_429_longer_than_the_deadline_fails_at_once(fake, ticket, sleeps):
    fake.fail_next, fake.retry_after = [429], "120"
    with pytest.raises(AdapterError, match=r"rate limited.*retry in 120 s"):
        adapter(fake, sleeps, remaining=fixed_budget(5)).get_state(ticket)
    assert sleeps == []


def test_5xx_backs_off_then_gives_up(fake, ticket, sleeps):
    fake.fail_next = [503, 500]
    assert adapter(fake, sleeps).list_comments(ticket)
    assert len(sleeps) == 2
    fake.fail_next = [500] * 10
    with pytest.raises(AdapterError, match="failed with HTTP 500, 4 attempts"):
        adapter(fake, sleeps).list_comments(ticket)


def test_no_call_is_started_without_time_left(fake, ticket):
    slow = RetryPolicy(margin=2.0)
    with pytest.raises(AdapterError, match="no time left"):
        adapter(fake, remaining=fixed_budget(1.0), retry=slow).get_state(ticket)
    assert fake.requests == []


def test_the_per_ticket_update_limit_is_an_adapter_error(fake, ticket, sleeps):
    fake.updates_per_ticket = 2
    zd = adapter(fake, sleeps, remaining=fixed_budget(5))
    zd.add_note(ticket, "one", "k1")
    zd.add_note(ticket, "two", "k2")
    with pytest.raises(AdapterError, match="rate limited"):
        zd.add_note(ticket, "three", "k3")
    assert len(fake.comments(ticket, public=False)) == 2


def test_bad_credentials_are_named_but_never_shown(fake, ticket):
    zd = ZendeskTickets(fake.url, fake.email, "sekrit-token-value", remaining=fixed_budget(5), retry=FAST)
    with pytest.raises(AdapterError) as caught:
        zd.respond(ticket, "x", "", "solved", "k")
    assert "credentials (HTTP 401)" in str(caught.value)
    assert "sekrit" not in str(caught.value) and fake.token not in str(caught.value)


def test_unreachable_zendesk_is_an_adapter_error(sleeps):
    with FakeZendesk() as gone:
        url = gone.url
    zd = ZendeskTickets(url, "a@b.example", "t", remaining=fixed_budget(5), retry=FAST, sleep=sleeps.append)
    with pytest.raises(AdapterError, match="unreachable"):
        zd.get_state("1")


# --- reads and loop guards ---------------------------------------------------------------------------------


def test_comments_follow_pagination_and_name_authors(fake, ticket):
    jane = str(fake.ticket(ticket)["requester_id"])
    for n in range(120):
        fake.reply_as(ticket, jane, f"more {n}")
    zd = adapter(fake)
    zd.respond(ticket, "Thanks!", "", "solved", "k")
    comments = zd.list_comments(ticket)
    assert len(comments) == 122
    assert comments[0].author == "jane.smith@example.com" and comments[0].body == "ORD-5001 has not arrived."
    assert comments[-1].author == AGENT_AUTHOR
    assert sum(1 for m, p in fake.requests if "/comments" in p) == 2


def test_requester_context_and_recent_tickets(fake):
    org = fake.create_organization("Acme Corp", domain_names=["acme.example"], tags=["vip"])
    jane = fake.create_user(
        "Jane Smith",
        "jane@acme.example",
        external_id="jane@acme.example",
        organization_id=org,
        user_fields={"plan": "premium"},
    )
    older = fake.create_ticket("Invoice address", "Please add our VAT number.", jane)
    current = fake.create_ticket("Hub offline", "My hub is offline again.", jane)
    fake.reply_as(older, jane, "Any news?")  # the older ticket was updated last
    zd = adapter(fake)
    who = zd.requester(current)
    assert (who.user.email, who.user.external_id, who.user.user_fields) == (
        "jane@acme.example",
        "jane@acme.example",
        {"plan": "premium"},
    )
    assert who.organization is not None and who.organization.tags == ["vip"]
    recent = zd.recent_tickets(who.user.id, limit=5, exclude=current)
    assert [t.id for t in recent] == [older]


def test_a_ticket_an_agent_opened_for_a_caller_is_not_answered_yet(fake):
    caller = fake.create_user("Phone caller")
    dana = fake.create_user("Dana", "dana@acme.example", role="agent")
    tid = fake.create_ticket("Call", "Caller asks about a refund.", caller, submitter_id=dana)
    assert adapter(fake).already_answered_by_human(tid) is False


def test_from_secret_and_the_invocation_deadline(fake, ticket):
    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 500  # less than the margin: no call may start

    deadline = InvocationDeadline(fallback=10)
    zd = ZendeskTickets.from_secret(
        {
            "base_url": fake.url,
            "email": fake.email,
            "api_token": fake.token,
            "group_ids": {"tier-2-humans": "42"},
        },
        remaining=deadline,
    )
    assert zd.get_state(ticket)["status"] == "new"
    deadline.start(Context())
    with pytest.raises(AdapterError, match="no time left"):
        zd.get_state(ticket)
    assert ZendeskTickets.from_secret(
        {"subdomain": "acme", "email": "a@b.c", "api_token": "t"}
    ).api.base_url == ("https://acme.zendesk.com")
    with pytest.raises(ValueError, match="subdomain"):
        ZendeskTickets.from_secret({"subdomain": "evil.example/x", "email": "a@b.c", "api_token": "t"})


def test_requester_without_email_is_found_by_id(fake):
    caller = fake.create_user("Phone caller")
    tid = fake.create_ticket("Call", "Customer called about a refund.", caller)
    user = adapter(fake).user(str(fake.ticket(tid)["requester_id"]))
    assert user.email is None and user.name == "Phone caller"


def test_loop_guards(fake, ticket):
    zd = adapter(fake)
    jane = str(fake.ticket(ticket)["requester_id"])
    dana = fake.create_user("Dana", "dana@acme.example", role="agent")
    zd.respond(ticket, "It ships tomorrow.", "note", "pending", "k")
    assert zd.already_answered_by_human(ticket) is False  # our own reply does not count
    fake.reply_as(ticket, dana, "internal remark", public=False)
    assert zd.already_answered_by_human(ticket) is False  # nor does a private note
    fake.reply_as(ticket, jane, "Thanks, and another question…")
    assert zd.already_answered_by_human(ticket) is False  # the requester is not staff
    fake.reply_as(ticket, dana, "I'll take this one.")
    assert zd.already_answered_by_human(ticket) is True
    assert zd.is_agent_author(fake.agent_id) and zd.is_agent_author(dana)
    assert not zd.is_agent_author(jane)


# --- Help Center -------------------------------------------------------------------------------------------


def test_help_center_search_per_locale(fake):
    track = fake.add_article("Track your order", "<h2>Tracking</h2><p>Open the <b>tracking</b> link.</p>")
    fake.add_article("Bestellung verfolgen", "<p>Öffnen Sie den Tracking-Link.</p>", locale="de")
    fake.add_article("Track (draft)", "<p>tracking draft</p>", draft=True)
    kb = ZendeskHelpCenter(fake.url, email=fake.email, api_token=fake.token, remaining=fixed_budget(5))
    found = kb.search("tracking my order")
    assert [a.id for a in found] == [track]
    assert found[0].url.endswith(f"/hc/en-us/articles/{track}") and found[0].score == 1.0
    assert "tracking" in found[0].snippet.lower()
    assert [a.title for a in kb.for_locale("de").search("Tracking")] == ["Bestellung verfolgen"]
    text = kb.get(track)
    assert text == "# Track your order\n\nTracking\n\nOpen the tracking link."
    assert kb.get("999999") is None and kb.get("../x") is None
    assert kb.search("   ") == []


# --- end to end through the agent -------------------------------------------------------------------------


def test_the_agent_answers_a_zendesk_ticket_once(stack, fake):
    from support_agent.adapters.customer_api import CustomerApiCrm
    from support_agent.agent.offline import OfflineProvider
    from support_agent.composition import agent_runner
    from support_agent.models import Requester, SessionState, Ticket
    from support_agent.rules import sessions as session_rules
    from support_agent.rules.sessions import session_id_for
    from support_agent_local.customer_api_server import CustomerApiServer

    jane = fake.create_user("Jane Smith", "jane.smith@example.com", external_id="cus_jane")
    tid = fake.create_ticket("Order status", "Where is my order? It has been a week.", jane)
    ticket = Ticket(
        id=tid,
        source="zendesk",
        subject="Order status",
        body="Where is my order? It has been a week.",
        requester=Requester(email="jane.smith@example.com", name="Jane Smith"),
        customer_id="cus_jane",
    )
    sid = session_id_for("zendesk", f"ticket.created:{tid}")
    with stack.environment_of("AgentStepFunction"), CustomerApiServer() as crm:
        stack.sessions().create(session_rules.new_session(sid, ticket, SessionState.QUEUED))
        runner = agent_runner(OfflineProvider())
        # The runner, its outcome writer and its follow-ups share one Adapters: swap two backends.
        runner.adapters.tickets = adapter(fake)
        runner.adapters.crm = CustomerApiCrm(crm.url, crm.token, remaining=fixed_budget(10))
        assert runner.start(sid).outcome == "respond"
        assert runner.start(sid).outcome == "skipped"  # the redelivered message
    (reply,) = replies(fake, tid)
    assert "ORD-5001" in reply and "1Z999AA10123456784" in reply
    state = fake.ticket(tid)
    assert state["status"] == "solved" and ANSWERED_TAG in state["tags"]
