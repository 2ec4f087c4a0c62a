"""The `Tickets` contract: the same behaviour from the embedded helpdesk (moto) and from Zendesk (the
adapter over real HTTP to the local stand-in). Tickets are addressed by their namespaced key
(`zendesk:1001`, `Ticket.key`)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from support_agent.adapters.embedded import EmbeddedTickets
from support_agent.adapters.http import RetryPolicy, fixed_budget
from support_agent.adapters.ports import AdapterError
from support_agent.adapters.zendesk import AGENT_AUTHOR, ZendeskTickets
from support_agent.models import Requester, Ticket
from support_agent_local.fake_zendesk import FakeZendesk

UNKNOWN = "987654"
NUMBERS = itertools.count(1001)  # the embedded table is shared by the module: a new id per ticket
FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, margin=0.0)


@dataclass
class Backend:
    name: str
    tickets: Any
    new_ticket: Callable[[], str]
    failing: Callable[[], Any]  # an adapter whose backing system fails
    secret: str


def _embedded(stack: Any) -> Backend:
    table = stack.ref("EmbeddedDataTable")
    tickets = EmbeddedTickets(table)

    def new_ticket() -> str:
        ticket = Ticket(
            id=str(next(NUMBERS)),
            source="zendesk",
            subject="Where is my order?",
            body="ORD-5001 has not arrived.",
            requester=Requester(email="jane.smith@example.com", name="Jane"),
        )
        tickets.ensure_ticket(ticket)
        return ticket.key

    return Backend("embedded", tickets, new_ticket, lambda: EmbeddedTickets("no-such-table"), "")


def _zendesk(fake: FakeZendesk) -> Backend:
    requester = fake.create_user("Jane Smith", "jane.smith@example.com")

    def adapter(token: str = fake.token) -> ZendeskTickets:
        return ZendeskTickets(
            fake.url,
            fake.email,
            token,
            group_ids={"tier-2-humans": 42},
            remaining=fixed_budget(10),
            retry=FAST,
        )

    def new_ticket() -> str:
        return "zendesk:" + fake.create_ticket("Where is my order?", "ORD-5001 has not arrived.", requester)

    return Backend("zendesk", adapter(), new_ticket, lambda: adapter("wrong-token-1234"), fake.token)


@pytest.fixture(params=["embedded", "zendesk"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "embedded":
        yield _embedded(request.getfixturevalue("shared_stack"))
        return
    with FakeZendesk() as fake:
        yield _zendesk(fake)


def ours(backend: Backend, ticket_id: str, public: bool) -> list[str]:
    return [
        c.body
        for c in backend.tickets.list_comments(ticket_id)
        if c.author == AGENT_AUTHOR and c.public is public
    ]


def test_an_unknown_ticket_reads_as_empty(backend):
    assert backend.tickets.get_state(UNKNOWN) == {}
    assert backend.tickets.list_comments(UNKNOWN) == []


@pytest.mark.parametrize(
    "write",
    [
        lambda t: t.respond(UNKNOWN, "Hello", "note", "solved", "k-unknown"),
        lambda t: t.add_note(UNKNOWN, "note", "k-unknown-note"),
        lambda t: t.assign(UNKNOWN, "tier-2-humans"),
    ],
    ids=["respond", "add_note", "assign"],
)
def test_writing_to_an_unknown_ticket_is_an_adapter_error_and_creates_nothing(backend, write):
    with pytest.raises(AdapterError, match=UNKNOWN):
        write(backend.tickets)
    assert backend.tickets.get_state(UNKNOWN) == {}


def test_a_known_ticket_has_a_state(backend):
    tid = backend.new_ticket()
    source, _, number = tid.partition(":")
    backend.tickets.ensure_ticket(
        Ticket(
            id=number,
            source=source,
            subject="Where is my order?",
            body="ORD-5001 has not arrived.",
            requester=Requester(email="jane.smith@example.com"),
        )
    )
    state = backend.tickets.get_state(tid)
    assert state["subject"] == "Where is my order?"
    assert state["status"] in {"new", "open"}


def test_respond_posts_reply_note_and_status(backend):
    tid = backend.new_ticket()
    backend.tickets.respond(tid, "It ships tomorrow.", "Answered by the agent.", "pending", "s1-reply")
    assert ours(backend, tid, public=True) == ["It ships tomorrow."]
    assert ours(backend, tid, public=False) == ["Answered by the agent."]
    comments = backend.tickets.list_comments(tid)
    assert [c.public for c in comments[-2:]] == [True, False]  # the reply, then the note
    assert backend.tickets.get_state(tid)["status"] == "pending"


def test_the_same_respond_key_twice_posts_one_reply(backend):
    tid = backend.new_ticket()
    for _ in range(2):
        backend.tickets.respond(tid, "It ships tomorrow.", "note", "solved", "s1-reply")
    assert ours(backend, tid, public=True) == ["It ships tomorrow."]
    assert ours(backend, tid, public=False) == ["note"]
    assert backend.tickets.get_state(tid)["status"] == "solved"


def test_different_keys_are_different_replies(backend):
    tid = backend.new_ticket()
    backend.tickets.respond(tid, "First.", "n1", "pending", "s1-reply")
    backend.tickets.respond(tid, "Second.", "n2", "solved", "s1-draft")
    assert ours(backend, tid, public=True) == ["First.", "Second."]


def test_a_note_is_once_per_key(backend):
    tid = backend.new_ticket()
    for _ in range(2):
        backend.tickets.add_note(tid, "Handed to people: refund.", "s1-handoff")
    backend.tickets.add_note(tid, "Taken over by Dana.", "s1-take-over")
    assert ours(backend, tid, public=False) == ["Handed to people: refund.", "Taken over by Dana."]
    assert ours(backend, tid, public=True) == []


def test_assign_hands_the_ticket_to_a_group(backend):
    tid = backend.new_ticket()
    backend.tickets.assign(tid, "tier-2-humans")
    backend.tickets.assign(tid, "tier-2-humans")
    assert backend.tickets.get_state(tid)["assignee"] == "tier-2-humans"


def test_a_failing_backend_is_an_adapter_error_with_a_safe_message(backend):
    tid = backend.new_ticket()
    broken = backend.failing()
    for call in (lambda: broken.get_state(tid), lambda: broken.list_comments(tid)):
        with pytest.raises(AdapterError) as caught:
            call()
        assert str(caught.value)
        if backend.secret:
            assert backend.secret not in str(caught.value)
            assert "wrong-token" not in str(caught.value)


def test_the_same_id_from_another_source_is_another_ticket(backend):
    # A generic "1234" is never Zendesk's #1234: its key names no ticket of this helpdesk.
    tid = backend.new_ticket()
    backend.tickets.respond(tid, "It ships tomorrow.", "note", "pending", "s1-reply")
    other = "generic:" + tid.partition(":")[2]
    assert backend.tickets.list_comments(other) == []
    assert backend.tickets.get_state(other) == {}
    with pytest.raises(AdapterError):
        backend.tickets.add_note(other, "Handed to people.", "s2-handoff")
    assert ours(backend, tid, public=False) == ["note"]
