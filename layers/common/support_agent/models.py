"""Pydantic models at the boundaries: tickets, sessions, customers, orders, approvals, decisions."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from support_agent import clock


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, defer_build=True)


# Deliberately simple: one @, no spaces, a dot in the domain. Whether the address exists is the
# ticketing system's business; what matters here is comparing it with the customer record.
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class Requester(Strict):
    """Who wrote the ticket: an e-mail, or only the helpdesk's user id (messaging, phone and social channels)."""

    email: str | None = Field(default=None, max_length=254, pattern=EMAIL_PATTERN)
    name: str | None = Field(default=None, max_length=200)
    id: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")

    @model_validator(mode="after")
    def _identified(self) -> Requester:
        if not self.email and not self.id:
            raise ValueError("a requester needs an email or a helpdesk user id")
        return self


class Ticket(Strict):
    """A support ticket, normalised from whichever system sent it."""

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    source: str
    subject: str = Field(max_length=500)
    # The whole text, however long the helpdesk allows; the model sees at most text.MODEL_TEXT_LIMIT of it.
    body: str = Field(min_length=1, max_length=200_000)
    requester: Requester
    customer_id: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    queue: str = Field(default="tier-1", pattern=r"^[A-Za-z0-9_-]+$")
    tags: list[str] = Field(default_factory=list)
    url: str | None = None
    created_at: str | None = None

    @property
    def key(self) -> str:
        """The ticket's id namespaced by its source (`zendesk:4829`): how the agent addresses the helpdesk
        and its history, so a generic ticket "4829" is never Zendesk's #4829."""
        return f"{self.source}:{self.id}"


BindingStatus = Literal["bound", "no_record", "hint_mismatch", "unsafe_address"]


class RequesterBinding(BaseModel):
    """The ticket's requester as the CRM knows them, resolved once per session (`agent.identity`).

    `customer_id` is set only when bound: the one record whose address is the requester's mailbox. Every
    customer-data tool acts on that record and no other; the policy's `{requester}` stands for it.
    """

    model_config = ConfigDict(defer_build=True)

    mailbox: str = Field(max_length=320)  # the requester's address, NFKC + casefold (as given if unsafe)
    status: BindingStatus
    customer_id: str | None = None
    hint: str | None = None  # the ticket's customer_id, a hint that had to match
    detail: str = ""


class SessionState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RESPONDED = "responded"
    AWAITING_APPROVAL = "awaiting_approval"
    HANDOFF = "handoff"
    CLOSED = "closed"


class Session(BaseModel):
    """One ticket's run through the agent."""

    model_config = ConfigDict(defer_build=True)

    session_id: str
    ticket: Ticket
    state: SessionState
    created_at: str
    updated_at: str
    reason: str | None = None
    tokens_used: int = 0
    tokens_committed: int = 0  # used plus reserved by runs (rules.budget.TokenBudget)
    turns: int = 0
    approval_id: str | None = None
    notice_id: str | None = None
    requester: RequesterBinding | None = None  # resolved once, when the session first runs
    outcome: str | None = None
    route: str | None = None
    escalation: Escalation | None = None
    transcript: list[dict[str, Any]] = Field(default_factory=list)
    actions: list[dict[str, Any]] = Field(default_factory=list)
    replies: list[str] = Field(default_factory=list)
    # While RUNNING: who holds the session and until when (rules.sessions.Lease); gone in every other state.
    lease_id: str | None = None
    lease_until: str | None = None
    lease_for: str | None = None


DecisionKind = Literal["approve", "partial", "deny", "reply_manually", "take_over", "send_draft", "expired"]


# Limits shared by Slack's payloads (slack.payloads), its modals (slack.endpoint) and the decision they
# record, so nothing Slack accepts fails validation when the decision is written or read again.
SLACK_ID_CHARS = 64  # a user or channel id
SLACK_NAME_CHARS = 256  # a user name
SLACK_INPUT_CHARS = 3000  # plain_text_input's largest max_length


class Decision(BaseModel):
    """What a person decided on an approval or a handoff notice (or that the request expired)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    kind: DecisionKind
    by: str = Field(default="", max_length=SLACK_ID_CHARS, description="Slack user id of the person")
    by_name: str = Field(default="", max_length=SLACK_NAME_CHARS)
    # Partial decisions: the decided value of the argument the approval lets people lower (money in the
    # currency's minor unit, or a count).
    amount: int | None = Field(default=None, gt=0)
    # Typed into a modal whose plain_text_input has max_length = SLACK_INPUT_CHARS (slack.endpoint).
    reason: str = Field(default="", max_length=SLACK_INPUT_CHARS)
    reply: str = Field(default="", max_length=SLACK_INPUT_CHARS)
    at: str = Field(default_factory=clock.iso)

    @property
    def who(self) -> str:
        return self.by_name or self.by


class CustomerSummary(BaseModel):
    """The customer as the person deciding sees them."""

    model_config = ConfigDict(defer_build=True)

    id: str
    name: str
    email: str = ""
    plan: str
    tenure_months: int
    lifetime_value_cents: int


class Detail(BaseModel):
    """One exact parameter of an action people decide on, as they read it ("Amount", "$50 …")."""

    model_config = ConfigDict(defer_build=True)

    label: str
    value: str


class Escalation(BaseModel):
    """The context people get with an approval request or a handoff (Slack and the helpdesk note)."""

    model_config = ConfigDict(defer_build=True)

    ticket_id: str
    source: str = ""
    ticket_url: str | None = None
    subject: str = ""
    requester: str = ""
    customer: CustomerSummary | None = None
    category: str = ""
    matched_rules: list[str] = Field(default_factory=list)
    issue: str = ""
    agent_notes: str = ""
    recommendation: str = ""
    target: CustomerSummary | None = None  # the account an approval acts on (name, id, e-mail)
    details: list[Detail] = Field(default_factory=list)  # the exact parameters: amount, invoice, …
    warnings: list[str] = Field(default_factory=list)  # e.g. the target is not the requester's account
    draft_reply: str = ""


class Offer(BaseModel):
    """One button on a request: the decision it records, its label, and a confirm dialog for destructive ones."""

    model_config = ConfigDict(defer_build=True)

    kind: DecisionKind
    label: str
    style: Literal["primary", "danger"] | None = None
    confirm: str | None = None


class PartialOffer(BaseModel):
    """What a partial decision overrides: one argument of the call, within (0, maximum]."""

    model_config = ConfigDict(defer_build=True)

    argument: str
    maximum: int = Field(gt=0)
    currency: str | None = None  # an amount of money in this currency's minor unit; None: a plain count
    label: str = "amount"

    def show(self, value: int) -> str:
        """A value of the argument as people read it."""
        from support_agent.money import money

        return money(value, self.currency) if self.currency else str(value)

    def parse(self, text: str) -> int | None:
        """What a person typed, as a value of the argument; None when it is not one."""
        from support_agent.money import parse_amount

        if self.currency:
            return parse_amount(text, self.currency)
        stripped = (text or "").strip()
        return int(stripped) if stripped.isascii() and stripped.isdigit() and len(stripped) <= 9 else None


RequestStatus = Literal["pending", "decided", "expired"]


class HumanRequest(BaseModel):
    """Something posted to people in Slack that waits for one decision (the first one wins)."""

    model_config = ConfigDict(defer_build=True)

    session_id: str
    channel: str
    escalation: Escalation
    offers: list[Offer] = Field(default_factory=list)
    status: RequestStatus = "pending"
    decision: Decision | None = None
    slack_channel: str | None = None
    slack_ts: str | None = None
    created_at: str = Field(default_factory=clock.iso)

    def offer(self, kind: str) -> Offer | None:
        """The offer for a decision kind, if this request makes it."""
        return next((o for o in self.offers if o.kind == kind), None)


class Approval(HumanRequest):
    """An approval-gated tool call, recorded with exactly the parameters that will run."""

    kind: Literal["approval"] = "approval"
    approval_id: str
    tool: str
    args: dict[str, Any] = Field(default_factory=dict)
    args_hash: str
    tool_use_id: str = ""
    rule: str = ""
    partial: PartialOffer | None = None
    task_token_set: bool = False
    reminders: int = 0

    @property
    def request_id(self) -> str:
        return self.approval_id


class HandoffNotice(HumanRequest):
    """A ticket handed to people, announced in Slack with Take over / Send agent's draft."""

    kind: Literal["handoff"] = "handoff"
    notice_id: str

    @property
    def request_id(self) -> str:
        return self.notice_id


PersonRequest = Approval | HandoffNotice
StoredRequest = Annotated[PersonRequest, Field(discriminator="kind")]


class AgentMessage(BaseModel):
    """What travels on the AgentQueue: start a session, carry out a decision, expire, or follow up a handoff."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    type: Literal["start", "resume", "expire", "handoff_follow_up", "sweep"] = "start"
    session_id: str = Field(min_length=1, max_length=80)
    approval_id: str | None = Field(default=None, max_length=80)
    notice_id: str | None = Field(default=None, max_length=80)
    decision: Decision | None = None


class NotifyMessage(BaseModel):
    """What travels on the NotifyQueue: from the approval workflow, or a handoff notice from the agent."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    type: Literal["request", "reminder", "decided", "expired", "handoff_notice"]
    session_id: str
    approval_id: str | None = None
    notice_id: str | None = None
    channel: str = ""
    task_token: str | None = None


class Customer(BaseModel):
    model_config = ConfigDict(defer_build=True)

    id: str
    name: str
    email: str
    plan: str
    signup_date: str
    lifetime_value_cents: int
    locale: str = "en"
    notifications: dict[str, bool] = Field(default_factory=dict)
    status: str = "active"

    def tenure_months(self, today: str) -> int:
        """Whole months between signup and `today` (ISO dates)."""
        y1, m1, d1 = (int(x) for x in self.signup_date[:10].split("-"))
        y2, m2, d2 = (int(x) for x in today[:10].split("-"))
        return max(0, (y2 - y1) * 12 + (m2 - m1) - (1 if d2 < d1 else 0))


class Order(BaseModel):
    model_config = ConfigDict(defer_build=True)

    id: str
    customer_id: str
    ordered_at: str
    items: list[dict[str, Any]]
    total_cents: int
    status: str
    carrier: str | None = None
    tracking: str | None = None
    shipped_at: str | None = None
    eta: str | None = None


class Invoice(BaseModel):
    model_config = ConfigDict(defer_build=True)

    id: str
    customer_id: str
    period: str
    description: str
    amount_cents: int
    status: str
    paid_at: str | None = None
    refunded_cents: int = 0
    currency: str = "usd"  # ISO 4217, lower case; *_cents are in its smallest unit (JPY: whole yen)


class Comment(BaseModel):
    model_config = ConfigDict(defer_build=True)

    author: str
    public: bool
    body: str
    created_at: str


class Refund(BaseModel):
    model_config = ConfigDict(defer_build=True)

    id: str
    customer_id: str
    invoice_id: str
    amount_cents: int
    idempotency_key: str
    created_at: str
    currency: str = "usd"


class Article(BaseModel):
    model_config = ConfigDict(defer_build=True)

    id: str
    title: str
    snippet: str
    url: str
    score: float
