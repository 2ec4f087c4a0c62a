"""The tool table: every tool the model may call, with its policy action, how its resource is formed,
and, for approval-gated tools, what people decide and how they see it.

Adding a gated tool is one entry here (with an `ApprovalSpec`) plus its adapter method: the loop, the
Slack message, the interactive endpoint and the demo read everything else from the entry.
`agent.executor.ToolExecutor` is the one place a call is validated, authorised, audited and run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from support_agent.adapters.ports import AdapterError, Adapters
from support_agent.agent.triage import Classification
from support_agent.models import Customer, Invoice, Offer, PartialOffer, Ticket
from support_agent.money import money
from support_agent.rules.policy import Policy

HUMAN_GROUP = "tier-2-humans"


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoArgs(Args):
    pass


class CustomerArgs(Args):
    customer_id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$", description="CRM customer id, like cus_jane")


class EmailArgs(Args):
    email: str = Field(max_length=254, description="the customer's email address")


class SearchArgs(Args):
    query: str = Field(min_length=2, max_length=300, description="what to look for, in plain words")


class ArticleArgs(Args):
    article_id: str = Field(
        pattern=r"^[A-Za-z0-9_.-]{1,80}$", description="an article id from search results"
    )


class ResetArgs(CustomerArgs):
    pass


class ProfileArgs(CustomerArgs):
    name: str | None = Field(default=None, max_length=120, description="new display name")
    notifications: dict[str, bool] | None = Field(
        default=None, description="notification channels to switch on or off: email, sms, digest"
    )


class RefundArgs(CustomerArgs):
    invoice_id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    amount_cents: int = Field(gt=0, le=10_000_00, description="amount to refund, in cents")
    reason: str = Field(min_length=3, max_length=500, description="why the refund is justified")


class DeleteArgs(CustomerArgs):
    reason: str = Field(min_length=3, max_length=500)


class ReplyArgs(Args):
    body: str = Field(min_length=10, max_length=5000, description="the public reply to the customer")
    status: Literal["solved", "pending"] = Field(
        description="solved, or pending when waiting on the customer"
    )
    internal_note: str = Field(default="", max_length=2000, description="reasoning summary for colleagues")


class HandoffArgs(Args):
    reason: str = Field(min_length=3, max_length=300, description="why a person must take over")
    summary: str = Field(
        min_length=3, max_length=2000, description="what you found, for the person taking over"
    )
    draft_reply: str = Field(default="", max_length=5000, description="a reply the person may send as is")


@dataclass
class ToolContext:
    """What a tool may use while it runs."""

    session_id: str
    ticket: Ticket
    adapters: Adapters
    customers: dict[str, Customer] = field(default_factory=dict)
    observed: dict[str, Any] = field(default_factory=dict)
    idempotency_prefix: str = ""

    def key(self, tool: str, args: BaseModel) -> str:
        """Idempotency key for a side effect: the same call in the same session maps to the same key."""
        return self.idempotency_prefix or f"{self.session_id}:{tool}:{args_hash(args.model_dump())[:16]}"


Terminal = Literal["respond", "handoff"]
# Runs another tool through the executor (policy, audit) and returns its result: how an ApprovalSpec
# looks up what people need to see (the invoice behind a refund) without bypassing the checks.
Lookup = Callable[[str, dict[str, Any]], Any]


@dataclass(frozen=True)
class ApprovalSpec:
    """What people decide about a gated tool, and the words they see for it."""

    noun: str  # "Refund" → buttons "Approve Refund", "Partial Refund"
    describe: Callable[[dict[str, Any], Lookup], str]  # the exact action, in words, for these arguments
    partial: str | None = None  # the argument a partial decision overrides, within (0, proposed value]
    partial_label: str = ""  # what the overridden argument is, for "partial refund of $50"
    # For money: the currency of the partial argument (its minor unit); None: a plain count.
    currency: Callable[[dict[str, Any], Lookup], str] | None = None
    destructive: bool = False  # approve is red and asks for confirmation

    def offers(self) -> list[Offer]:
        """The buttons, in order."""
        approve = Offer(
            kind="approve",
            label=f"Approve {self.noun}",
            style="danger" if self.destructive else "primary",
            confirm=f"{self.noun} cannot be undone. Approve it?" if self.destructive else None,
        )
        offers = [approve]
        if self.partial:
            offers.append(Offer(kind="partial", label=f"Partial {self.noun}"))
        offers.append(Offer(kind="deny", label="Deny", style=None if self.destructive else "danger"))
        offers.append(Offer(kind="reply_manually", label="Reply Manually"))
        return offers

    def partial_offer(self, args: dict[str, Any], lookup: Lookup) -> PartialOffer | None:
        """The bound of a partial decision: at most what the agent proposed."""
        if not self.partial:
            return None
        return PartialOffer(
            argument=self.partial,
            maximum=int(args[self.partial]),
            currency=self.currency(args, lookup) if self.currency else None,
            label=self.partial_label or self.partial,
        )


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    args: type[Args]
    action: str
    resource: Callable[[ToolContext, Any], str]
    run: Callable[[ToolContext, Any], Any]
    terminal: Terminal | None = None
    changes_account: bool = False  # the requester must own the account (identity check)
    approval: ApprovalSpec | None = None  # how people see and decide it, when the policy requires approval

    def schema(self) -> dict[str, Any]:
        """The tool as the Messages API expects it."""
        schema = self.args.model_json_schema()
        schema.pop("title", None)
        return {"name": self.name, "description": self.description, "input_schema": schema}


def args_hash(args: dict[str, Any]) -> str:
    """SHA-256 of canonical JSON arguments: ties an approval to exactly these parameters."""
    return hashlib.sha256(json.dumps(args, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _customer(ctx: ToolContext, a: CustomerArgs) -> Any:
    customer = ctx.adapters.crm.get_customer(a.customer_id)
    if customer is None:
        raise AdapterError(f"no customer {a.customer_id}")
    ctx.customers[customer.id] = customer
    return customer


def _by_email(ctx: ToolContext, a: EmailArgs) -> Any:
    customer = ctx.adapters.crm.find_customer_by_email(a.email)
    if customer is None:
        return {"found": False}
    ctx.customers[customer.id] = customer
    return customer


def _history(ctx: ToolContext, _a: NoArgs) -> Any:
    return ctx.adapters.tickets.list_comments(ctx.ticket.id)


def _reset(ctx: ToolContext, a: ResetArgs) -> Any:
    ctx.adapters.accounts.send_password_reset(a.customer_id, ctx.key("send_password_reset", a))
    return {"sent": True, "to": "the account's email address"}


def _profile(ctx: ToolContext, a: ProfileArgs) -> Any:
    fields = a.model_dump(exclude_none=True, exclude={"customer_id"})
    if not fields:
        raise AdapterError("nothing to change: give name and/or notifications")
    if "notifications" in fields:
        current = ctx.customers[a.customer_id].notifications if a.customer_id in ctx.customers else {}
        fields["notifications"] = {**current, **fields["notifications"]}
    return ctx.adapters.accounts.update_profile(a.customer_id, fields)


def _refund(ctx: ToolContext, a: RefundArgs) -> Any:
    return ctx.adapters.billing.refund(
        a.customer_id, a.invoice_id, a.amount_cents, ctx.key("issue_refund", a)
    )


def _delete(ctx: ToolContext, a: DeleteArgs) -> Any:
    ctx.adapters.accounts.delete_account(a.customer_id, ctx.key("delete_account", a))
    return {"status": "pending_deletion", "grace_period_days": 14}


def _article(ctx: ToolContext, a: ArticleArgs) -> Any:
    text = ctx.adapters.kb.get(a.article_id)
    if text is None:
        raise AdapterError(f"no article {a.article_id}")
    return {"id": a.article_id, "text": text[:6000]}


def _invoice(args: dict[str, Any], lookup: Lookup) -> Invoice | None:
    invoices = lookup("list_invoices", {"customer_id": args["customer_id"]})
    return next((i for i in invoices or [] if getattr(i, "id", None) == args["invoice_id"]), None)


def _describe_refund(args: dict[str, Any], lookup: Lookup) -> str:
    invoice = _invoice(args, lookup)
    amount = int(args["amount_cents"])
    if invoice is None:
        return f"Refund of {money(amount)} (invoice {args['invoice_id']})"
    whole = amount >= invoice.amount_cents - invoice.refunded_cents
    what = "Full refund" if whole else "Partial refund"
    return f"{what} of {money(amount, invoice.currency)} (invoice {invoice.id}, {invoice.description})"


def _refund_currency(args: dict[str, Any], lookup: Lookup) -> str:
    invoice = _invoice(args, lookup)
    return invoice.currency if invoice else "usd"


def _terminal(_ctx: ToolContext, a: Args) -> Any:
    return a.model_dump()  # the loop carries out respond and handoff, with its own audit entries


TOOLS: tuple[Tool, ...] = (
    Tool(
        "get_ticket_history",
        "Earlier public and internal comments on this ticket.",
        NoArgs,
        "tickets:read",
        lambda c, a: f"queue/{c.ticket.queue}",
        _history,
    ),
    Tool(
        "get_customer",
        "The customer's profile: name, email, plan, signup date, lifetime value, preferences.",
        CustomerArgs,
        "crm:read",
        lambda c, a: f"customers/{a.customer_id}",
        _customer,
    ),
    Tool(
        "find_customer_by_email",
        "Look a customer up by email address.",
        EmailArgs,
        "crm:read",
        lambda c, a: f"customers/{a.email.lower()}",
        _by_email,
    ),
    Tool(
        "list_orders",
        "The customer's orders, newest first, with shipping status, carrier, tracking number and ETA.",
        CustomerArgs,
        "crm:read",
        lambda c, a: f"orders/{a.customer_id}",
        lambda c, a: c.adapters.crm.list_orders(a.customer_id),
    ),
    Tool(
        "list_invoices",
        "The customer's invoices, newest first, with amounts in cents and refunds already made.",
        CustomerArgs,
        "billing:read",
        lambda c, a: f"customers/{a.customer_id}",
        lambda c, a: c.adapters.billing.list_invoices(a.customer_id),
    ),
    Tool(
        "search_help_center",
        "Search the help-center articles (policies, how-tos, incidents, SLA). Returns titles, snippets, links.",
        SearchArgs,
        "kb:read",
        lambda c, a: "articles/search",
        lambda c, a: c.adapters.kb.search(a.query, 3),
    ),
    Tool(
        "read_help_article",
        "The full text of one help-center article (use an id from search_help_center).",
        ArticleArgs,
        "kb:read",
        lambda c, a: f"articles/{a.article_id}",
        _article,
    ),
    Tool(
        "send_password_reset",
        "Email a password-reset link to the account's own address.",
        ResetArgs,
        "accounts:reset_password",
        lambda c, a: f"customers/{a.customer_id}",
        _reset,
        changes_account=True,
    ),
    Tool(
        "update_profile",
        "Change the customer's display name and/or notification preferences (nothing else).",
        ProfileArgs,
        "accounts:update",
        lambda c, a: f"customers/{a.customer_id}/profile",
        _profile,
        changes_account=True,
    ),
    Tool(
        "issue_refund",
        "Refund (part of) an invoice. Needs a person's approval; propose the amount you recommend.",
        RefundArgs,
        "billing:refund",
        lambda c, a: f"customers/{a.customer_id}",
        _refund,
        approval=ApprovalSpec(
            noun="Refund",
            describe=_describe_refund,
            partial="amount_cents",
            partial_label="refund",
            currency=_refund_currency,
        ),
    ),
    Tool(
        "delete_account",
        "Delete the customer's account (irreversible after 14 days). Needs a person's approval.",
        DeleteArgs,
        "crm:delete",
        lambda c, a: f"customers/{a.customer_id}",
        _delete,
        changes_account=True,
        approval=ApprovalSpec(
            noun="Deletion",
            describe=lambda args, _lookup: "Delete the account (irreversible after 14 days)",
            destructive=True,
        ),
    ),
    Tool(
        "reply_to_customer",
        "Send the public reply and finish. Write it for this customer, using what you looked up.",
        ReplyArgs,
        "tickets:respond",
        lambda c, a: f"queue/{c.ticket.queue}",
        _terminal,
        terminal="respond",
    ),
    Tool(
        "hand_off_to_human",
        "Give the ticket to a person, with a summary of what you found. Use it when unsure.",
        HandoffArgs,
        "tickets:assign",
        lambda c, a: f"tickets/{c.ticket.id}",
        _terminal,
        terminal="handoff",
    ),
)
TOOLS_BY_NAME = {t.name: t for t in TOOLS}
CLASSIFY_TOOL = {
    "name": "classify_ticket",
    "description": "Record your classification of the ticket before doing anything else.",
    "input_schema": {k: v for k, v in Classification.model_json_schema().items() if k != "title"},
}


def offered_tools(policy: Policy, route: str, table: tuple[Tool, ...] = TOOLS) -> list[Tool]:
    """Tools worth offering: the policy could allow them, and a reply only when the route is auto."""
    tools = [t for t in table if policy.could_allow(t.action)]
    if route != "auto":
        tools = [t for t in tools if t.terminal != "respond"]
    return tools


@dataclass
class PendingAction:
    """An approval-gated call, recorded instead of run."""

    tool: str
    args: dict[str, Any]
    args_hash: str
    channel: str
    rule: str
    tool_use_id: str
