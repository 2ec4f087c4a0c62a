"""The tool table: every tool the model may call, with its policy action, how its resource is formed,
and, for approval-gated tools, what people decide and how they see it.

Adding a gated tool is one entry here (with an `ApprovalSpec`) plus its adapter method: the loop, the
Slack message, the interactive endpoint and the demo read everything else from the entry.
`agent.executor.ToolExecutor` is the one place a call is validated, authorised, audited and run.

Customer-data tools are `bound`: they take no customer id from the model. They act on the record the
session bound to the ticket's verified requester (`agent.identity`), which the executor fills in, and
their resources (`customers/<that id>`) meet policy rules written with `{requester}`.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from support_agent.adapters.ports import AdapterError, Adapters
from support_agent.agent.triage import Classification
from support_agent.models import Customer, Detail, Invoice, Offer, PartialOffer, RequesterBinding, Ticket
from support_agent.money import money
from support_agent.rules.policy import Policy

HUMAN_GROUP = "tier-2-humans"


class Args(BaseModel):
    # defer_build: a tool's arguments are validated (and its schema built) only when a session uses it.
    model_config = ConfigDict(extra="forbid", defer_build=True)


class NoArgs(Args):
    pass


# The argument a bound tool's approval records its target account under (filled in, never the model's).
TARGET = "customer_id"


class SearchArgs(Args):
    query: str = Field(min_length=2, max_length=300, description="what to look for, in plain words")


class ArticleArgs(Args):
    article_id: str = Field(
        pattern=r"^[A-Za-z0-9_.-]{1,80}$", description="an article id from search results"
    )


class ProfileArgs(Args):
    name: str | None = Field(default=None, max_length=120, description="new display name")
    notifications: dict[str, bool] | None = Field(
        default=None, description="notification channels to switch on or off: email, sms, digest"
    )


class RefundArgs(Args):
    invoice_id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$", description="one of the requester's invoices")
    amount_cents: int = Field(gt=0, le=10_000_00, description="amount to refund, in cents")
    reason: str = Field(min_length=3, max_length=500, description="why the refund is justified")


class DeleteArgs(Args):
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


class Unbound(AdapterError):
    """A bound tool ran without a customer record bound to the requester."""


@dataclass
class ToolContext:
    """What a tool may use while it runs."""

    session_id: str
    ticket: Ticket
    adapters: Adapters
    requester: RequesterBinding | None = None  # who the requester is in the CRM (`agent.identity`)
    customers: dict[str, Customer] = field(default_factory=dict)
    observed: dict[str, Any] = field(default_factory=dict)
    lookups: dict[str, Any] = field(default_factory=dict)  # results by tool and exact arguments
    idempotency_prefix: str = ""
    # Whether the customer may be answered directly now (the route is auto, or a person decided); the
    # reply tool stays offered either way, so the prompt's prefix is the same for every turn and session.
    may_reply: bool = True

    @property
    def customer_id(self) -> str | None:
        """The requester's customer record, when the session bound one."""
        binding = self.requester
        return binding.customer_id if binding is not None and binding.status == "bound" else None

    @property
    def bound(self) -> str:
        """The bound customer id (bound tools run only with one; the executor checks first)."""
        if self.customer_id is None:
            raise Unbound("no customer record is bound to the requester")
        return self.customer_id

    def key(self, tool: str, args: BaseModel) -> str:
        """Idempotency key for a side effect: the same call in the same session maps to the same key."""
        call = {**args.model_dump(), TARGET: self.customer_id}
        return self.idempotency_prefix or f"{self.session_id}:{tool}:{args_hash(call)[:16]}"


Terminal = Literal["respond", "handoff"]
# Runs another tool through the executor (policy, audit) and returns its result: how an ApprovalSpec
# looks up what people need to see (the invoice behind a refund) without bypassing the checks.
Lookup = Callable[[str, dict[str, Any]], Any]


@dataclass(frozen=True)
class ApprovalSpec:
    """What people decide about a gated tool, and the words they see for it."""

    noun: str  # "Refund" → buttons "Approve Refund", "Partial Refund"
    describe: Callable[[dict[str, Any], Lookup], str]  # the exact action, in words, for these arguments
    # The exact parameters, one line each ("Amount", "Invoice"), for these arguments.
    details: Callable[[dict[str, Any], Lookup], list[Detail]] | None = None
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
    bound: bool = False  # acts on the requester's bound customer record, which the model cannot name
    # A check of the arguments against what the requester owns, before anything is run or proposed;
    # returns the reason to refuse (safe to show the model) or None.
    check: Callable[[ToolContext, Any, Lookup], str | None] | None = None

    def schema(self) -> dict[str, Any]:
        """The tool as the Messages API expects it (built once per process; do not change it)."""
        return _schema(self.name, self.description, self.args)


@functools.cache
def _schema(name: str, description: str, args: type[BaseModel]) -> dict[str, Any]:
    schema = args.model_json_schema()
    schema.pop("title", None)
    return {"name": name, "description": description, "input_schema": schema}


def args_hash(args: dict[str, Any]) -> str:
    """SHA-256 of canonical JSON arguments: ties an approval to exactly these parameters."""
    return hashlib.sha256(json.dumps(args, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _customer(ctx: ToolContext, _a: NoArgs) -> Any:
    customer = ctx.adapters.crm.get_customer(ctx.bound)
    if customer is None:
        raise AdapterError("the requester's customer record was not found")
    ctx.customers[customer.id] = customer
    return customer


def _history(ctx: ToolContext, _a: NoArgs) -> Any:
    return ctx.adapters.tickets.list_comments(ctx.ticket.key)


def _reset(ctx: ToolContext, a: NoArgs) -> Any:
    ctx.adapters.accounts.send_password_reset(ctx.bound, ctx.key("send_password_reset", a))
    return {"sent": True, "to": "the account's email address"}


def _profile(ctx: ToolContext, a: ProfileArgs) -> Any:
    fields = a.model_dump(exclude_none=True)
    if not fields:
        raise AdapterError("nothing to change: give name and/or notifications")
    if "notifications" in fields:
        known = ctx.customers.get(ctx.bound)
        current = known.notifications if known is not None else {}
        fields["notifications"] = {**current, **fields["notifications"]}
    return ctx.adapters.accounts.update_profile(ctx.bound, fields)


def _refund(ctx: ToolContext, a: RefundArgs) -> Any:
    return ctx.adapters.billing.refund(ctx.bound, a.invoice_id, a.amount_cents, ctx.key("issue_refund", a))


def _delete(ctx: ToolContext, a: DeleteArgs) -> Any:
    ctx.adapters.accounts.delete_account(ctx.bound, ctx.key("delete_account", a))
    return {"status": "pending_deletion", "grace_period_days": 14}


def _article(ctx: ToolContext, a: ArticleArgs) -> Any:
    text = ctx.adapters.kb.get(a.article_id)
    if text is None:
        raise AdapterError(f"no article {a.article_id}")
    return {"id": a.article_id, "text": text[:6000]}


def _invoice(args: dict[str, Any], lookup: Lookup) -> Invoice | None:
    """The invoice a refund names, among the requester's own invoices (None: not one of theirs)."""
    invoices = lookup("list_invoices", {})
    found = (i for i in invoices or [] if isinstance(i, Invoice) and i.id == args["invoice_id"])
    return next(found, None)


def _own_invoice(ctx: ToolContext, a: RefundArgs, lookup: Lookup) -> str | None:
    if _invoice(a.model_dump(), lookup) is None:
        return f"invoice {a.invoice_id} is not one of the requester's invoices"
    return None


def _refund_kind(amount: int, invoice: Invoice) -> str:
    """Full only for the whole invoice with nothing refunded before; anything less is partial."""
    return (
        "Full refund" if amount >= invoice.amount_cents and not invoice.refunded_cents else "Partial refund"
    )


def _describe_refund(args: dict[str, Any], lookup: Lookup) -> str:
    invoice = _invoice(args, lookup)
    amount = int(args["amount_cents"])
    if invoice is None:
        return f"Refund of {money(amount)} (invoice {args['invoice_id']}, not found among the customer's invoices)"
    what = _refund_kind(amount, invoice)
    of = "" if what == "Full refund" else f" of {money(invoice.amount_cents, invoice.currency)}"
    return f"{what} of {money(amount, invoice.currency)}{of} (invoice {invoice.id}, {invoice.description})"


def _refund_details(args: dict[str, Any], lookup: Lookup) -> list[Detail]:
    invoice = _invoice(args, lookup)
    amount = int(args["amount_cents"])
    if invoice is None:
        return [
            Detail(label="Amount", value=money(amount)),
            Detail(label="Invoice", value=f"{args['invoice_id']} (not one of the customer's invoices)"),
        ]
    cur = invoice.currency
    before = (
        f"{money(invoice.refunded_cents, cur)} refunded before"
        if invoice.refunded_cents
        else "nothing refunded before"
    )
    return [
        Detail(label="Amount", value=f"{money(amount, cur)} — {_refund_kind(amount, invoice).lower()}"),
        Detail(
            label="Invoice",
            value=f"{invoice.id}: {invoice.description}, {money(invoice.amount_cents, cur)} {invoice.status}, {before}",
        ),
    ]


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
        "The requester's own customer profile: name, email, plan, signup date, lifetime value, preferences.",
        NoArgs,
        "crm:read",
        lambda c, a: f"customers/{c.bound}",
        _customer,
        bound=True,
    ),
    Tool(
        "list_orders",
        "The requester's own orders, newest first, with shipping status, carrier, tracking number and ETA.",
        NoArgs,
        "crm:read",
        lambda c, a: f"orders/{c.bound}",
        lambda c, a: c.adapters.crm.list_orders(c.bound),
        bound=True,
    ),
    Tool(
        "list_invoices",
        "The requester's own invoices, newest first, with amounts in cents and refunds already made.",
        NoArgs,
        "billing:read",
        lambda c, a: f"customers/{c.bound}",
        lambda c, a: c.adapters.billing.list_invoices(c.bound),
        bound=True,
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
        "Email a password-reset link to the requester's own account address.",
        NoArgs,
        "accounts:reset_password",
        lambda c, a: f"customers/{c.bound}",
        _reset,
        changes_account=True,
        bound=True,
    ),
    Tool(
        "update_profile",
        "Change the requester's display name and/or notification preferences (nothing else).",
        ProfileArgs,
        "accounts:update",
        lambda c, a: f"customers/{c.bound}/profile",
        _profile,
        changes_account=True,
        bound=True,
    ),
    Tool(
        "issue_refund",
        "Refund (part of) one of the requester's invoices. Needs a person's approval; propose the amount you "
        "recommend.",
        RefundArgs,
        "billing:refund",
        lambda c, a: f"customers/{c.bound}",
        _refund,
        approval=ApprovalSpec(
            noun="Refund",
            describe=_describe_refund,
            details=_refund_details,
            partial="amount_cents",
            partial_label="refund",
            currency=_refund_currency,
        ),
        bound=True,
        check=_own_invoice,
    ),
    Tool(
        "delete_account",
        "Delete the requester's account (irreversible after 14 days). Needs a person's approval.",
        DeleteArgs,
        "crm:delete",
        lambda c, a: f"customers/{c.bound}",
        _delete,
        changes_account=True,
        approval=ApprovalSpec(
            noun="Deletion",
            describe=lambda args, _lookup: "Delete the account (irreversible after 14 days)",
            destructive=True,
        ),
        bound=True,
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
        lambda c, a: f"tickets/{c.ticket.key}",
        _terminal,
        terminal="handoff",
    ),
)
TOOLS_BY_NAME = {t.name: t for t in TOOLS}


def classify_tool() -> dict[str, Any]:
    """The classification tool as the Messages API expects it (built once per process, on first use)."""
    return _schema(
        "classify_ticket",
        "Record your classification of the ticket before doing anything else.",
        Classification,
    )


def offered_tools(policy: Policy, table: tuple[Tool, ...] = TOOLS) -> list[Tool]:
    """Tools worth offering: the policy could allow them. The same for every session and turn of a
    deployment (the prompt cache's prefix); what a route forbids, the executor refuses."""
    return [t for t in table if policy.could_allow(t.action)]


@dataclass
class PendingAction:
    """An approval-gated call, recorded instead of run."""

    tool: str
    args: dict[str, Any]
    args_hash: str
    channel: str
    rule: str
    tool_use_id: str
