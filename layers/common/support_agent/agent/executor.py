"""The one permission checkpoint: every tool call is validated, authorised against the policy at the moment
it runs, checked for identity where it changes an account, audited, and only then run, refused, or
recorded as pending a person's approval. The model never decides what it may do.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from support_agent.adapters.ports import AdapterError
from support_agent.agent.tools import TOOLS_BY_NAME, PendingAction, Terminal, Tool, ToolContext, args_hash
from support_agent.rules.audit import Journal
from support_agent.rules.policy import Effect, Policy

OutcomeKind = Literal["result", "error", "approval", "terminal", "identity_mismatch"]


@dataclass
class ToolOutcome:
    kind: OutcomeKind
    content: Any
    pending: PendingAction | None = None
    terminal: Terminal | None = None
    side_effect: bool = False  # the call changed something outside (an account, a payment)

    def for_model(self) -> str:
        """The tool_result text the model sees."""
        return json.dumps(_dump(self.content), default=str)[:8000]


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
        verdict = self.policy.authorize(tool.action, resource)
        why = verdict.describe()
        if verdict.effect is Effect.DENY:
            self._record(tool, resource, why, "refused")
            return ToolOutcome("error", {"error": f"{tool.action} on {resource} is not allowed by policy"})
        if tool.changes_account and not self._identity_matches(args):
            self._record(tool, resource, why, "refused_identity_mismatch")
            return ToolOutcome("identity_mismatch", {"error": "requester email does not match the account"})
        if verdict.effect is Effect.REQUIRES_APPROVAL and not approved:
            dumped = args.model_dump(mode="json")
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
        return ToolOutcome("result", result, side_effect=side_effect)

    def lookup(self, name: str, args: dict[str, Any]) -> Any:
        """A read through the same checks, for what people need to see; reuses what this run already read."""
        if name not in self.ctx.observed:
            self.execute(name, args)
        return self.ctx.observed.get(name)

    def _identity_matches(self, args: BaseModel) -> bool:
        customer_id = getattr(args, "customer_id", None)
        if not customer_id:
            return False
        customer = self.ctx.customers.get(customer_id) or self.ctx.adapters.crm.get_customer(customer_id)
        if customer is None:
            return False
        self.ctx.customers[customer.id] = customer
        requester = self.ctx.ticket.requester.email
        return requester is not None and customer.email.strip().lower() == requester.strip().lower()

    def _record(
        self, tool: Tool, resource: str, decision: str, outcome: str, details: dict[str, Any] | None = None
    ) -> None:
        self.journal.record(tool.action, resource, decision, outcome, {"tool": tool.name, **(details or {})})
