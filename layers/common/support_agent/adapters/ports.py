"""The ports: what the agent needs from ticketing, CRM, billing, accounts and the help center."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from support_agent.models import Article, Comment, Customer, Invoice, Order, Refund, Ticket


class AdapterError(Exception):
    """A backing system refused or failed; the message is safe to show the model and the audit trail."""


class Tickets(Protocol):
    """A helpdesk. Tickets are addressed by their namespaced key, `Ticket.key` (`zendesk:4829`), so tickets
    of different sources with the same id never share a history; a key of a source the helpdesk does not
    serve names no ticket."""

    def ensure_ticket(self, ticket: Ticket) -> None: ...
    def list_comments(self, ticket_id: str) -> list[Comment]: ...
    def respond(self, ticket_id: str, reply: str, note: str, status: str, idempotency_key: str) -> None:
        """Public reply, internal note and status in one update (as Zendesk's ticket update does)."""
        ...

    def add_note(self, ticket_id: str, body: str, idempotency_key: str) -> None: ...
    def already_answered_by_human(self, ticket_id: str) -> bool:
        """True when a person (staff other than the agent) replied publicly: the ticket is theirs then."""
        ...

    def assign(self, ticket_id: str, group: str) -> None: ...


class Crm(Protocol):
    def get_customer(self, customer_id: str) -> Customer | None: ...
    def find_customer_by_email(self, email: str) -> Customer | None: ...
    def list_orders(self, customer_id: str) -> list[Order]: ...


class Billing(Protocol):
    def list_invoices(self, customer_id: str) -> list[Invoice]: ...
    def refund(self, customer_id: str, invoice_id: str, amount_cents: int, idempotency_key: str) -> Refund:
        """Refund once per idempotency key: a repeated call returns the first refund, as Stripe does."""
        ...


class Accounts(Protocol):
    def send_password_reset(self, customer_id: str, idempotency_key: str) -> None: ...
    def update_profile(self, customer_id: str, fields: dict[str, Any]) -> Customer: ...
    def delete_account(self, customer_id: str, idempotency_key: str) -> None: ...


class KnowledgeBase(Protocol):
    def search(self, query: str, limit: int = 3) -> list[Article]: ...
    def get(self, article_id: str) -> str | None: ...


@dataclass
class Adapters:
    """Everything the agent talks to, injected (tests and the demo swap any of them)."""

    tickets: Tickets
    crm: Crm
    billing: Billing
    accounts: Accounts
    kb: KnowledgeBase
