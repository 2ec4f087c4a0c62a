"""In-memory fakes of every port: storage (sessions, requests, audit, budgets, the session commit),
messaging (queue, workflow), Slack, and the outside systems (helpdesk, CRM, billing, accounts).

They keep the same rules as the real implementations — guarded moves, first decision wins, all-or-nothing
commits, refunds once per key — so the agent core, decisions and the Slack endpoint get fast unit tests.
Local-only: not shipped in the Lambda layer. moto keeps the integration and end-to-end tests honest.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from support_agent import clock
from support_agent.adapters.knowledge import MarkdownKnowledgeBase
from support_agent.adapters.ports import AdapterError, Adapters
from support_agent.messaging import TokenRejected
from support_agent.models import (
    Comment,
    Customer,
    Decision,
    Invoice,
    Order,
    PersonRequest,
    Refund,
    Session,
    SessionState,
    Ticket,
)
from support_agent.rules.approvals import AlreadyDecided, status_after
from support_agent.rules.audit import START, AuditDraft, AuditEntry, Head, chain
from support_agent.rules.audit_keys import LocalMacKey, MacKey
from support_agent.rules.audit_proof import Digest
from support_agent.rules.budget import Slot, today
from support_agent.rules.sessions import (
    Guard,
    SessionChange,
    SessionExists,
    TransitionRefused,
    check_transition,
    moved_fields,
)

SAMPLE_DATA = (
    Path(__file__).resolve().parents[2] / "layers" / "common" / "support_agent" / "data" / "sample_data.json"
)


class MemorySessionStore:
    def __init__(self) -> None:
        self.items: dict[str, Session] = {}
        self.lock = threading.Lock()

    def create(self, session: Session) -> None:
        with self.lock:
            if session.session_id in self.items:
                raise SessionExists(self.items[session.session_id])
            self.items[session.session_id] = session.model_copy(deep=True)

    def get(self, session_id: str) -> Session | None:
        found = self.items.get(session_id)
        return found.model_copy(deep=True) if found else None

    def transition(
        self,
        session_id: str,
        expected: SessionState,
        new: SessionState,
        guard: Guard | None = None,
        **fields: Any,
    ) -> Session:
        with self.lock:
            return self.apply(session_id, expected, new, fields, guard)

    def expired_leases(self, state: SessionState, before: str) -> list[str]:
        return [
            s.session_id
            for s in self.items.values()
            if s.state is state and s.lease_until is not None and s.lease_until < before
        ]

    def apply(
        self,
        session_id: str,
        expected: SessionState,
        new: SessionState,
        fields: dict[str, Any],
        guard: Guard | None = None,
    ) -> Session:
        """The guarded move (the caller holds the lock)."""
        check_transition(expected, new)
        current = self.items.get(session_id)
        if current is None or current.state is not expected or (guard and not guard.holds(current)):
            raise TransitionRefused(f"session {session_id} is not {expected.value}")
        data = {
            **current.model_dump(mode="json"),
            **_plain(moved_fields(new, fields)),
            "state": new.value,
            "updated_at": clock.iso(),
        }
        self.items[session_id] = Session.model_validate(data)
        return self.items[session_id].model_copy(deep=True)


def _plain(fields: dict[str, Any]) -> dict[str, Any]:
    def one(value: Any) -> Any:
        if isinstance(value, BaseModel):
            return value.model_dump(mode="json")
        if isinstance(value, list):
            return [one(v) for v in value]
        return value

    return {k: one(v) for k, v in fields.items()}


class MemoryApprovalStore:
    def __init__(self, audit: MemoryAuditLog | None = None) -> None:
        self.items: dict[str, PersonRequest] = {}
        self.tokens: dict[str, str] = {}
        self.lock = threading.Lock()
        self.audit = audit  # where `record` and `decide_recorded` write their entries

    def put(self, request: PersonRequest) -> None:
        if request.request_id in self.items:
            raise TransitionRefused(f"request {request.request_id} exists")
        self.items[request.request_id] = request.model_copy(deep=True)

    def get(self, request_id: str) -> PersonRequest | None:
        found = self.items.get(request_id)
        return found.model_copy(deep=True) if found else None

    def task_token(self, approval_id: str, *, reread: bool = True) -> str | None:
        return self.tokens.get(approval_id)

    def record(self, request: PersonRequest, entries: list[AuditDraft], **fields: Any) -> None:
        audit = self._audit_log()
        with audit.lock, self.lock:
            current = self.items[request.request_id]
            self.items[request.request_id] = current.model_copy(update=fields)
            audit.extend(request.session_id, entries)

    def decide_recorded(
        self, request: PersonRequest, decision: Decision, entries: list[AuditDraft]
    ) -> PersonRequest:
        audit = self._audit_log()
        with audit.lock:
            decided = self.decide(request.request_id, decision)
            audit.extend(request.session_id, entries)
        return decided

    def _audit_log(self) -> MemoryAuditLog:
        if self.audit is None:
            raise TypeError("MemoryApprovalStore needs the audit log to write entries with a request")
        return self.audit

    def update(self, request_id: str, **fields: Any) -> PersonRequest:
        with self.lock:
            if "task_token" in fields:
                self.tokens[request_id] = str(fields.pop("task_token"))
            current = self.items[request_id]
            self.items[request_id] = current.model_copy(update=fields)
            return self.items[request_id].model_copy(deep=True)

    def decide(self, request_id: str, decision: Decision) -> PersonRequest:
        with self.lock:
            current = self.items.get(request_id)
            if current is None or current.status != "pending":
                raise AlreadyDecided(current.model_copy(deep=True) if current else None)
            decided = current.model_copy(update={"status": status_after(decision), "decision": decision})
            self.items[request_id] = decided
            return decided.model_copy(deep=True)


class MemoryAuditLog:
    """Chains sealed with a local MAC key; heads anchored per session (as on the session records) for every
    session in `sessions` (all chains when it is None); digests in a list."""

    def __init__(self, key: MacKey | None = None, sessions: MemorySessionStore | None = None) -> None:
        self.chains: dict[str, list[AuditEntry]] = {}
        self.key: MacKey | None = key or LocalMacKey()
        self.sessions = sessions
        self.heads: dict[str, Head] = {}  # the session records' audit_seq / audit_hash / audit_mac
        self.digest_items: list[Digest] = []
        self.lock = threading.Lock()

    def append(
        self, session_id: str, drafts: list[AuditDraft], *, new_chain: bool = False
    ) -> list[AuditEntry]:
        with self.lock:
            return self.extend(session_id, drafts)

    def extend(self, session_id: str, drafts: list[AuditDraft]) -> list[AuditEntry]:
        """Chain, store and anchor (the caller holds the lock)."""
        current = self.chains.setdefault(session_id, [])
        head = current[-1].head if current else START
        entries = chain(session_id, head, drafts, self.key)
        current.extend(entries)
        if entries and (self.sessions is None or session_id in self.sessions.items):
            self.heads[session_id] = entries[-1].head
        return entries

    def entries(self, session_id: str) -> list[AuditEntry]:
        return list(self.chains.get(session_id, []))

    def all_entries(self) -> Iterator[AuditEntry]:
        for entries in list(self.chains.values()):
            yield from entries

    def anchors(self, session_id: str | None = None) -> dict[str, Head]:
        if session_id is not None:
            return {session_id: self.heads[session_id]} if session_id in self.heads else {}
        return dict(self.heads)

    def digests(self) -> list[Digest]:
        return list(self.digest_items)

    def put_digest(self, digest: Digest) -> None:
        if any(d.number == digest.number for d in self.digest_items):
            raise ValueError(f"digest {digest.number} exists")
        self.digest_items.append(digest)

    def actions(self, session_id: str) -> list[tuple[str, str]]:
        """(action, outcome) of every entry of a session, in order (what tests read)."""
        return [(e.action, e.outcome) for e in self.entries(session_id)]


@dataclass
class MemorySessionCommitter:
    """All or nothing, like the DynamoDB transaction: check every condition, then write everything."""

    sessions: MemorySessionStore
    approvals: MemoryApprovalStore
    audit: MemoryAuditLog
    fail_next: int = 0  # make the next commits fail as a refused transaction would (fault injection)

    def commit(self, change: SessionChange) -> None:
        with self.sessions.lock, self.approvals.lock, self.audit.lock:
            if self.fail_next:
                self.fail_next -= 1
                raise TransitionRefused("injected failure")
            current = self.sessions.items.get(change.session_id)
            if current is None or current.state is not change.expected:
                raise TransitionRefused(f"session {change.session_id} is not {change.expected.value}")
            if change.request is not None and change.request.request_id in self.approvals.items:
                raise TransitionRefused(f"request {change.request.request_id} exists")
            self.sessions.apply(change.session_id, change.expected, change.new, change.fields, change.guard)
            if change.request is not None:
                self.approvals.put(change.request)
            self.audit.extend(change.session_id, change.entries)


class MemoryTokenBudget:
    def __init__(self, sessions: MemorySessionStore) -> None:
        self.sessions = sessions

    def reserve(self, session_id: str, tokens: int, limit: int) -> bool:
        with self.sessions.lock:
            session = self.sessions.items[session_id]
            if session.tokens_committed + tokens > limit:
                return False
            session.tokens_committed += tokens
            return True


class MemoryDailyBudget:
    def __init__(
        self, sessions: MemorySessionStore | None = None, audit: MemoryAuditLog | None = None
    ) -> None:
        self.days: dict[str, int] = {}
        self.sessions = sessions or MemorySessionStore()
        self.audit = audit

    def open(self, session: Session, limit: int, tz: tzinfo, entries: Sequence[AuditDraft] = ()) -> Slot:
        if entries and self.audit is None:
            raise TypeError("MemoryDailyBudget.open needs the audit log for entries")
        with self.sessions.lock:
            existing = self.sessions.items.get(session.session_id)
            if existing is not None:
                raise SessionExists(existing.model_copy(deep=True))
            slot = self.take(limit, tz)
            if slot.granted:
                self.sessions.items[session.session_id] = session.model_copy(deep=True)
                if self.audit is not None and entries:
                    with self.audit.lock:
                        self.audit.extend(session.session_id, list(entries))
            return slot

    def take(self, limit: int, tz: tzinfo) -> Slot:
        day = today(tz)
        if self.days.get(day, 0) >= limit:
            return Slot(False, day, limit, limit)
        self.days[day] = self.days.get(day, 0) + 1
        return Slot(True, day, self.days[day], limit)

    def used(self, tz: tzinfo) -> int:
        return self.days.get(today(tz), 0)


@dataclass
class MemoryQueue:
    sent: list[BaseModel] = field(default_factory=list)

    def send(self, message: BaseModel) -> None:
        self.sent.append(message)


@dataclass
class MemoryWorkflow:
    """Executions by name; a task token is answered once (a second answer is rejected, as Step Functions does)."""

    started: dict[str, dict[str, Any]] = field(default_factory=dict)
    answers: dict[str, Decision] = field(default_factory=dict)
    retired: set[str] = field(default_factory=set)
    fail_start: bool = False

    def start(self, approval_id: str, payload: dict[str, Any]) -> None:
        if self.fail_start:
            raise RuntimeError("Step Functions is unavailable")
        self.started.setdefault(approval_id, payload)

    def answer(self, task_token: str, decision: Decision) -> None:
        if not task_token or task_token in self.answers or task_token in self.retired:
            raise TokenRejected("TaskTimedOut")
        self.answers[task_token] = decision

    def time_out(self, task_token: str) -> None:
        """The task waiting on `task_token` timed out (a reminder replaces it): it can no longer be answered."""
        self.retired.add(task_token)


@dataclass
class MemorySlack:
    """Records every call; answers as Slack would (channel id and ts for posts)."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    groups: dict[str, set[str]] = field(default_factory=dict)

    def of(self, method: str) -> list[dict[str, Any]]:
        return [args for name, args in self.calls if name == method]

    def post_message(
        self,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
    ) -> tuple[str, str]:
        self.calls.append(
            ("chat.postMessage", {"channel": channel, "text": text, "blocks": blocks, "thread_ts": thread_ts})
        )
        return "C0ESCALATE", f"1795845600.{len(self.calls):06d}"

    def update_message(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]]) -> None:
        self.calls.append(("chat.update", {"channel": channel, "ts": ts, "text": text, "blocks": blocks}))

    def post_ephemeral(self, channel: str, user: str, text: str) -> None:
        self.calls.append(("chat.postEphemeral", {"channel": channel, "user": user, "text": text}))

    def open_view(self, trigger_id: str, view: dict[str, Any]) -> None:
        self.calls.append(("views.open", {"trigger_id": trigger_id, "view": view}))

    def usergroup_members(self, usergroup: str) -> set[str]:
        self.calls.append(("usergroups.users.list", {"usergroup": usergroup}))
        return set(self.groups.get(usergroup, set()))


# --- outside systems --------------------------------------------------------------------------------


@dataclass
class MemoryHelpdesk:
    """Tickets with comments, status and assignee, by namespaced key (`source:id`); a reply key is posted
    once."""

    tickets: dict[str, dict[str, Any]] = field(default_factory=dict)
    comments: dict[str, list[Comment]] = field(default_factory=dict)
    keys: set[str] = field(default_factory=set)

    def ensure_ticket(self, ticket: Ticket) -> None:
        # Keyed by the namespaced key (`generic:T-1`), as the agent addresses tickets.
        self.tickets.setdefault(
            ticket.key,
            {"status": "new", "assignee": None, "requester": ticket.requester.email or ticket.requester.id},
        )

    def list_comments(self, ticket_id: str) -> list[Comment]:
        return list(self.comments.get(ticket_id, []))

    def respond(self, ticket_id: str, reply: str, note: str, status: str, idempotency_key: str) -> None:
        if idempotency_key in self.keys:
            return
        self.keys.add(idempotency_key)
        self._comment(ticket_id, True, reply)
        self._comment(ticket_id, False, note)
        self.tickets.setdefault(ticket_id, {})["status"] = status

    def add_note(self, ticket_id: str, body: str, idempotency_key: str) -> None:
        if idempotency_key not in self.keys:
            self.keys.add(idempotency_key)
            self._comment(ticket_id, False, body)

    def assign(self, ticket_id: str, group: str) -> None:
        self.tickets.setdefault(ticket_id, {})["assignee"] = group

    def already_answered_by_human(self, ticket_id: str) -> bool:
        return any(c.public and c.author.startswith("staff:") for c in self.comments.get(ticket_id, []))

    def reply_as_staff(self, ticket_id: str, body: str) -> None:
        """A person answers the customer in the helpdesk (while the agent is still working)."""
        comment = Comment(author="staff:lee", public=True, body=body, created_at=clock.iso())
        self.comments.setdefault(ticket_id, []).append(comment)

    def public_replies(self, ticket_id: str) -> list[str]:
        return [c.body for c in self.comments.get(ticket_id, []) if c.public]

    def _comment(self, ticket_id: str, public: bool, body: str) -> None:
        comment = Comment(author="agent:support-agent", public=public, body=body, created_at=clock.iso())
        self.comments.setdefault(ticket_id, []).append(comment)


@dataclass
class MemoryCustomers:
    """CRM, billing and accounts over the sample data, in memory; refunds once per key."""

    customers: dict[str, Customer] = field(default_factory=dict)
    orders: list[Order] = field(default_factory=list)
    invoices: dict[str, Invoice] = field(default_factory=dict)
    refunds: dict[str, Refund] = field(default_factory=dict)
    resets: list[str] = field(default_factory=list)
    deleted: set[str] = field(default_factory=set)

    @classmethod
    def sample(cls, path: Path = SAMPLE_DATA) -> MemoryCustomers:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            customers={c["id"]: Customer.model_validate(c) for c in data["customers"]},
            orders=[Order.model_validate(o) for o in data["orders"]],
            invoices={i["id"]: Invoice.model_validate(i) for i in data["invoices"]},
        )

    def get_customer(self, customer_id: str) -> Customer | None:
        return self.customers.get(customer_id)

    def find_customer_by_email(self, email: str) -> Customer | None:
        return next((c for c in self.customers.values() if c.email.lower() == email.strip().lower()), None)

    def list_orders(self, customer_id: str) -> list[Order]:
        return sorted(
            (o for o in self.orders if o.customer_id == customer_id), key=lambda o: o.ordered_at, reverse=True
        )

    def list_invoices(self, customer_id: str) -> list[Invoice]:
        mine = (i for i in self.invoices.values() if i.customer_id == customer_id)
        return sorted(mine, key=lambda i: i.period, reverse=True)

    def refund(self, customer_id: str, invoice_id: str, amount_cents: int, idempotency_key: str) -> Refund:
        if idempotency_key in self.refunds:
            return self.refunds[idempotency_key]
        invoice = self.invoices.get(invoice_id)
        if invoice is None or invoice.customer_id != customer_id:
            raise AdapterError(f"invoice {invoice_id} does not belong to customer {customer_id}")
        if not 0 < amount_cents <= invoice.amount_cents - invoice.refunded_cents:
            raise AdapterError(f"refund of {amount_cents} is more than {invoice_id} has left")
        invoice.refunded_cents += amount_cents
        refund = Refund(
            id=f"re_{len(self.refunds) + 1}",
            customer_id=customer_id,
            invoice_id=invoice_id,
            amount_cents=amount_cents,
            currency=invoice.currency,
            idempotency_key=idempotency_key,
            created_at=clock.iso(),
        )
        self.refunds[idempotency_key] = refund
        return refund

    def send_password_reset(self, customer_id: str, idempotency_key: str) -> None:
        if customer_id not in self.customers:
            raise AdapterError(f"no customer {customer_id}")
        if idempotency_key not in self.resets:
            self.resets.append(idempotency_key)

    def update_profile(self, customer_id: str, fields: dict[str, Any]) -> Customer:
        customer = self.customers.get(customer_id)
        if customer is None:
            raise AdapterError(f"no customer {customer_id}")
        self.customers[customer_id] = customer.model_copy(update=fields)
        return self.customers[customer_id]

    def delete_account(self, customer_id: str, idempotency_key: str) -> None:
        if customer_id not in self.customers:
            raise AdapterError(f"no customer {customer_id}")
        self.deleted.add(customer_id)


def memory_adapters(
    helpdesk: MemoryHelpdesk | None = None, customers: MemoryCustomers | None = None
) -> Adapters:
    """Every outside system in memory, over the sample data, with the bundled help center."""
    people = customers or MemoryCustomers.sample()
    return Adapters(
        tickets=helpdesk or MemoryHelpdesk(),
        crm=people,
        billing=people,
        accounts=people,
        kb=MarkdownKnowledgeBase.bundled(),
    )


@dataclass
class MemoryWorld:
    """The agent, the Slack endpoint and the notifier wired to in-memory fakes, as composition wires them
    to AWS. Tests drive one ticket through its outcome and any decision in milliseconds."""

    policy: Any
    sessions: MemorySessionStore = field(default_factory=MemorySessionStore)
    approvals: MemoryApprovalStore = field(default_factory=MemoryApprovalStore)
    audit: MemoryAuditLog = field(default_factory=MemoryAuditLog)
    workflow: MemoryWorkflow = field(default_factory=MemoryWorkflow)
    notify_queue: MemoryQueue = field(default_factory=MemoryQueue)
    agent_queue: MemoryQueue = field(default_factory=MemoryQueue)
    slack: MemorySlack = field(default_factory=MemorySlack)
    helpdesk: MemoryHelpdesk = field(default_factory=MemoryHelpdesk)
    customers: MemoryCustomers = field(default_factory=MemoryCustomers.sample)
    signing_secret: str = "test-signing-secret"

    def __post_init__(self) -> None:
        self.audit.sessions = self.sessions
        self.approvals.audit = self.audit
        self.commits = MemorySessionCommitter(self.sessions, self.approvals, self.audit)
        self.adapters = memory_adapters(self.helpdesk, self.customers)

    def runner(self, provider: Any, tools: tuple[Any, ...] | None = None) -> Any:
        from support_agent.agent.decisions import HandoffFollowUps
        from support_agent.agent.loop import TurnLoop
        from support_agent.agent.outcomes import OutcomeWriter
        from support_agent.agent.runner import AgentRunner
        from support_agent.agent.tools import TOOLS

        table = tools or TOOLS
        loop = TurnLoop(self.policy, provider, MemoryTokenBudget(self.sessions), tools=table)
        by_name = {t.name: t for t in table}
        outcomes = OutcomeWriter(
            self.policy, self.adapters, self.commits, self.workflow, self.notify_queue, by_name
        )
        follow_ups = HandoffFollowUps(self.policy, self.adapters, self.commits)
        return AgentRunner(
            self.policy, self.sessions, self.approvals, self.audit, self.adapters, loop, outcomes, follow_ups
        )

    def endpoint(self) -> Any:
        from support_agent.slack.client import ApproverDirectory
        from support_agent.slack.endpoint import SlackEndpoint

        return SlackEndpoint(
            self.policy,
            self.approvals,
            self.audit,
            self.slack,
            ApproverDirectory(self.slack),
            self.workflow,
            self.agent_queue,
            self.signing_secret,
        )

    def notifier(self, max_reminders: int = 2) -> Any:
        from support_agent.slack.notifier import Notifier

        return Notifier(self.approvals, self.audit, self.slack, self.workflow, max_reminders)

    def ticket(
        self, body: str, *, email: str = "jane.smith@example.com", subject: str = "Question", **extra: Any
    ) -> str:
        """A queued session for a new ticket; returns its id."""
        from support_agent.rules.sessions import new_session, session_id_for

        number = len(self.sessions.items) + 1
        ticket = Ticket(
            id=f"T-{number}",
            source="generic",
            subject=subject,
            body=body,
            requester={"email": email},
            **extra,
        )
        session_id = session_id_for("generic", f"evt-{number}")
        self.sessions.create(new_session(session_id, ticket, SessionState.QUEUED))
        return session_id
