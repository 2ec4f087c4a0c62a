"""Pydantic models at the boundaries: tickets, sessions, customers, orders, approvals, decisions."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, defer_build=True)


# Deliberately simple: one @, no spaces, a dot in the domain. Whether the address exists is the
# ticketing system's business; what matters here is comparing it with the customer record.
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class Requester(Strict):
    email: str = Field(max_length=254, pattern=EMAIL_PATTERN)
    name: str | None = Field(default=None, max_length=200)


class Ticket(Strict):
    """A support ticket, normalised from whichever system sent it."""

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    source: str
    subject: str = Field(max_length=500)
    body: str = Field(min_length=1, max_length=20000)
    requester: Requester
    customer_id: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    queue: str = Field(default="tier-1", pattern=r"^[A-Za-z0-9_-]+$")
    tags: list[str] = Field(default_factory=list)
    url: str | None = None
    created_at: str | None = None


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
    turns: int = 0
    approval_id: str | None = None
    outcome: str | None = None
    route: str | None = None
    escalation: dict[str, Any] | None = None
    transcript: list[dict[str, Any]] = Field(default_factory=list)
    actions: list[dict[str, Any]] = Field(default_factory=list)
    replies: list[str] = Field(default_factory=list)


class AgentMessage(BaseModel):
    """What travels on the AgentQueue."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    type: Literal["start", "resume", "expire"] = "start"
    session_id: str = Field(min_length=1, max_length=80)
    approval_id: str | None = None
    decision: dict[str, Any] | None = None


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
