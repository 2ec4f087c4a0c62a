"""The one permission checkpoint: every tool call is validated, authorised against the policy at the moment
it runs, checked for identity where it changes an account, audited, and only then run, refused, or
recorded as pending a person's approval. The model never decides what it may do.

Customer-data tools act only on the record the session bound to the requester: the model cannot name a
customer (the arguments have no customer id), the policy's `{requester}` is filled from the binding, and a
customer id arriving any other way (an extension tool's argument, a stored approval) must be the bound one.
What the model reads back is JSON with `<`, `>` and `&` escaped, so no text in it can open or close a
delimiter of the prompt.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from support_agent.adapters.ports import AdapterError
from support_agent.agent.identity import same_mailbox
from support_agent.agent.tools import (
    TARGET,
    TOOLS_BY_NAME,
    PendingAction,
    Terminal,
    Tool,
    ToolContext,
    args_hash,
)
from support_agent.rules.audit import Journal
from support_agent.rules.policy import Effect, Policy

OutcomeKind = Literal["result", "error", "approval", "terminal", "identity_mismatch"]
UNBOUND = "customers/(none bound)"  # the resource a bound tool is refused on when no record is bound
ROUTE_REFUSAL = (
    "the policy guard routed this ticket to people: you may not reply to the customer directly; propose "
    "the approval-gated action or hand off with a draft"
)


def safe_json(value: Any) -> str:
    """JSON whose text cannot contain `<`, `>` or `&` (escaped as \\u003c, …): it cannot forge a tag."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


@dataclass
class ToolOutcome:
    kind: OutcomeKind
    content: Any
    pending: PendingAction | None = None
    terminal: Terminal | None = None
    side_effect: bool = False  # the call changed something outside (an account, a payment)

    def for_model(self) -> str:
        """The tool_result text the model sees (tags in it escaped; cut at 8,000 characters)."""
        return safe_json(_dump(self.content))[:8000]


def _lookup_key(name: str, args: dict[str, Any]) -> str:
    return f"{name}:{args_hash(args)}"


def _dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_dump(v) for v in value]
    return value


@dataclass
class ToolExecutor:
    """Runs tool calls through validation, policy, identity check and audit."""

    policy: Policy
    journal: Journal
    ctx: ToolContext
    tools: Mapping[str, Tool] = field(default_factory=lambda: TOOLS_BY_NAME)

    def execute(
        self, name: str, raw_args: Any, tool_use_id: str = "", *, approved: bool = False
    ) -> ToolOutcome:
        """One tool call. `approved` is set only when carrying out a recorded human decision."""
        tool = self.tools.get(name)
        if tool is None:
            shown = str(name)[:64]
            self.journal.record("tool:call", f"tools/{shown}", "n/a", "refused_unknown_tool")
            return ToolOutcome("error", {"error": f"unknown tool {shown}"})
        if tool.terminal == "respond" and not self.ctx.may_reply:
            self.journal.record(
                tool.action, f"tickets/{self.ctx.ticket.key}", "route:escalate", "refused_route"
            )
            return ToolOutcome("error", {"error": ROUTE_REFUSAL})
        bound = self.ctx.customer_id
        raw = dict(raw_args) if isinstance(raw_args, Mapping) else raw_args
        # A stored approval records its target account; it must still be the requester's.
        if tool.bound and approved and isinstance(raw, dict) and raw.pop(TARGET, None) != bound:
            where = UNBOUND if bound is None else f"customers/{bound}"
            self._record(tool, where, "n/a", "refused_not_requester")
            return ToolOutcome("error", {"error": "the approved account is not the requester's"})
        try:
            args = tool.args.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors()
            )
            self._record(tool, "n/a", "invalid", "invalid_arguments", {"problems": problems[:300]})
            return ToolOutcome("error", {"error": f"invalid arguments: {problems}"})
        if tool.bound and bound is None:
            self._record(tool, UNBOUND, "n/a", "refused_unbound")
            return ToolOutcome("error", {"error": "no customer record is bound to the requester"})
        named = getattr(args, TARGET, None)
        if named is not None and named != bound:
            # An extension tool that takes a customer id: only the requester's own record.
            self._record(tool, f"customers/{str(named)[:64]}", "n/a", "refused_not_requester")
            return ToolOutcome(
                "error", {"error": "customer-data tools act only on the requester's own record"}
            )
        resource = tool.resource(self.ctx, args)
        verdict = self.policy.authorize(tool.action, resource, requester=bound)
        why = verdict.describe()
        if verdict.effect is Effect.DENY:
            self._record(tool, resource, why, "refused")
            return ToolOutcome("error", {"error": f"{tool.action} on {resource} is not allowed by policy"})
        problem = tool.check(self.ctx, args, self.lookup) if tool.check else None
        if problem:
            self._record(tool, resource, why, "refused_check", {"problem": problem[:300]})
            return ToolOutcome("error", {"error": problem})
        if (tool.changes_account or (tool.bound and tool.approval)) and not self._identity_matches():
            self._record(tool, resource, why, "refused_identity_mismatch")
            return ToolOutcome("identity_mismatch", {"error": "requester email does not match the account"})
        if verdict.effect is Effect.REQUIRES_APPROVAL and not approved:
            dumped = args.model_dump(mode="json")
            if tool.bound:
                dumped[TARGET] = bound  # the approval names the account it acts on, under its hash
            pending = PendingAction(
                tool.name, dumped, args_hash(dumped), verdict.approval_channel or "", why, tool_use_id
            )
            self._record(tool, resource, why, "pending_approval", {"args_hash": pending.args_hash})
            return ToolOutcome("approval", {"status": "waiting for a person's approval"}, pending)
        if tool.terminal:
            self._record(tool, resource, why, "allowed")
            return ToolOutcome("terminal", args.model_dump(), terminal=tool.terminal)
        side_effect = tool.changes_account or approved
        # A side effect is preceded by a durable audit entry; reads ride with the next flush or commit.
        self._record(tool, resource, why, "executing" if side_effect else "ok")
        if side_effect:
            self.journal.flush()
        try:
            result = tool.run(self.ctx, args)
        except AdapterError as exc:
            self._record(tool, resource, why, "failed", {"error": str(exc)[:300]})
            return ToolOutcome("error", {"error": str(exc)})
        if side_effect:
            self._record(tool, resource, why, "executed")
        self.ctx.observed[tool.name] = result
        if not side_effect:
            self.ctx.lookups[_lookup_key(tool.name, args.model_dump(mode="json"))] = result
        return ToolOutcome("result", result, side_effect=side_effect)

    def lookup(self, name: str, args: dict[str, Any]) -> Any:
        """A read through the same checks, for what people need to see; reuses what this run already read
        with exactly these arguments (None when the read is refused or fails)."""
        key = _lookup_key(name, args)
        if key not in self.ctx.lookups:
            outcome = self.execute(name, args)
            self.ctx.lookups[key] = outcome.content if outcome.kind == "result" else None
        return self.ctx.lookups[key]

    def _identity_matches(self) -> bool:
        """The account is the requester's: the bound record still has exactly the requester's mailbox."""
        binding, customer_id = self.ctx.requester, self.ctx.customer_id
        if binding is None or customer_id is None:
            return False
        customer = self.ctx.customers.get(customer_id) or self.ctx.adapters.crm.get_customer(customer_id)
        if customer is None:
            return False
        self.ctx.customers[customer.id] = customer
        return same_mailbox(customer.email, binding.mailbox)

    def _record(
        self, tool: Tool, resource: str, decision: str, outcome: str, details: dict[str, Any] | None = None
    ) -> None:
        self.journal.record(tool.action, resource, decision, outcome, {"tool": tool.name, **(details or {})})
