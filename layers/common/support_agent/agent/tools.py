"""Tools the model may call. Each declares its policy action and how its resource is formed.

The model never decides what it may do: `ToolExecutor.execute` validates the arguments, authorises the
action on the resource against the policy at that moment, records the decision in the audit trail, and
only then runs the tool, refuses it, or records it as pending a human's approval.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from support_agent.adapters.ports import AdapterError, Adapters
from support_agent.audit import AuditTrail
from support_agent.models import Customer, Ticket
from support_agent.policy import Effect, Policy
from support_agent.triage import Classification

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


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    args: type[Args]
    action: str
    resource: Callable[[ToolContext, Any], str]
    run: Callable[[ToolContext, Any], Any]
    terminal: Terminal | None = None
    changes_account: bool = False

    def schema(self) -> dict[str, Any]:
        """The tool as the Messages API expects it."""
        schema = self.args.model_json_schema()
        schema.pop("title", None)
        return {"name": self.name, "description": self.description, "input_schema": schema}


def args_hash(args: dict[str, Any]) -> str:
    """SHA-256 of canonical JSON arguments: ties an approval to exactly these parameters."""
    return hashlib.sha256(json.dumps(args, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_dump(v) for v in value]
    return value


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
    ),
    Tool(
        "delete_account",
        "Delete the customer's account (irreversible after 14 days). Needs a person's approval.",
        DeleteArgs,
        "crm:delete",
        lambda c, a: f"customers/{a.customer_id}",
        _delete,
        changes_account=True,
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


def offered_tools(policy: Policy, route: str) -> list[Tool]:
    """Tools worth offering: the policy could allow them, and a reply only when the route is auto."""
    tools = [t for t in TOOLS if policy.could_allow(t.action)]
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


@dataclass
class ToolOutcome:
    kind: Literal["result", "error", "approval", "terminal", "identity_mismatch"]
    content: Any
    pending: PendingAction | None = None
    terminal: Terminal | None = None
    args: BaseModel | None = None

    def for_model(self) -> str:
        """The tool_result text the model sees."""
        return json.dumps(_dump(self.content), default=str)[:8000]


@dataclass
class ToolExecutor:
    """Runs tool calls through validation, policy, identity check and audit."""

    policy: Policy
    audit: AuditTrail
    ctx: ToolContext
    actor: str = "agent"

    def execute(
        self, name: str, raw_args: Any, tool_use_id: str = "", *, approved: bool = False
    ) -> ToolOutcome:
        """One tool call. `approved` is set only when replaying a recorded human decision."""
        tool = TOOLS_BY_NAME.get(name)
        if tool is None:
            return ToolOutcome("error", {"error": f"unknown tool {name}"})
        try:
            args = tool.args.model_validate(raw_args)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors()
            )
            self._record(tool, "n/a", "invalid", "invalid_arguments", {"problems": problems[:300]})
            return ToolOutcome("error", {"error": f"invalid arguments: {problems}"})
        resource = tool.resource(self.ctx, args)
        decision = self.policy.authorize(tool.action, resource)
        if decision.effect is Effect.DENY:
            self._record(tool, resource, decision.describe(), "refused")
            return ToolOutcome("error", {"error": f"{tool.action} on {resource} is not allowed by policy"})
        if tool.changes_account and not self._identity_matches(args):
            self._record(tool, resource, decision.describe(), "refused_identity_mismatch")
            return ToolOutcome("identity_mismatch", {"error": "requester email does not match the account"})
        if decision.effect is Effect.REQUIRES_APPROVAL and not approved:
            dumped = args.model_dump(mode="json")
            pending = PendingAction(
                tool.name,
                dumped,
                args_hash(dumped),
                decision.approval_channel or "",
                decision.describe(),
                tool_use_id,
            )
            self._record(
                tool, resource, decision.describe(), "pending_approval", {"args_hash": pending.args_hash}
            )
            return ToolOutcome("approval", {"status": "waiting for a person's approval"}, pending, args=args)
        if tool.terminal:
            self._record(tool, resource, decision.describe(), "allowed")
            return ToolOutcome("terminal", args.model_dump(), terminal=tool.terminal, args=args)
        # Side effects are preceded by a durable audit entry; reads may ride with the next flush.
        self._record(
            tool, resource, decision.describe(), "executing" if tool.changes_account or approved else "ok"
        )
        if tool.changes_account or approved:
            self.audit.flush(self.ctx.session_id)
        try:
            result = tool.run(self.ctx, args)
        except AdapterError as exc:
            self._record(tool, resource, decision.describe(), "failed", {"error": str(exc)[:300]})
            return ToolOutcome("error", {"error": str(exc)})
        if tool.changes_account or approved:
            self._record(tool, resource, decision.describe(), "executed")
        self.ctx.observed[tool.name] = result
        return ToolOutcome("result", result, args=args)

    def _identity_matches(self, args: BaseModel) -> bool:
        customer_id = getattr(args, "customer_id", None)
        if not customer_id:
            return False
        customer = self.ctx.customers.get(customer_id) or self.ctx.adapters.crm.get_customer(customer_id)
        if customer is None:
            return False
        self.ctx.customers[customer.id] = customer
        return customer.email.strip().lower() == self.ctx.ticket.requester.email.strip().lower()

    def _record(
        self, tool: Tool, resource: str, decision: str, outcome: str, details: dict[str, Any] | None = None
    ) -> None:
        self.audit.record(
            self.ctx.session_id,
            actor=self.actor,
            action=tool.action,
            resource=resource,
            decision=decision,
            outcome=outcome,
            details={"tool": tool.name, **(details or {})},
        )
