"""Requests for people (approvals and handoff notices), stored beside their session, behind a port.

The first decision wins: recording a decision is a guarded write on `status = pending`, so a second
click, a double submission or a concurrent approver cannot decide twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from support_agent.models import Decision, PersonRequest

if TYPE_CHECKING:
    from support_agent.rules.audit import AuditDraft


class AlreadyDecided(Exception):
    """Someone decided first (or the request expired); carries the stored request."""

    def __init__(self, request: PersonRequest | None) -> None:
        super().__init__("already decided")
        self.request = request


def status_after(decision: Decision) -> str:
    """The status a decision leaves its request in."""
    return "expired" if decision.kind == "expired" else "decided"


class ApprovalStore(Protocol):
    def get(self, request_id: str) -> PersonRequest | None:
        """The approval or handoff notice, read consistently, or None."""
        ...

    def task_token(self, approval_id: str, *, reread: bool = True) -> str | None:
        """The workflow's task token (kept here, never sent to Slack); `reread=False`: the one read with
        the request in this invocation, if any."""
        ...

    def update(self, request_id: str, **fields: Any) -> PersonRequest:
        """Set bookkeeping fields (Slack message, reminders, task token) of an existing request; returns the
        request as that write left it (its status read in the same write)."""
        ...

    def decide(self, request_id: str, decision: Decision) -> PersonRequest:
        """Record the first decision; AlreadyDecided (with the stored request) otherwise."""
        ...

    def record(self, request: PersonRequest, entries: list[AuditDraft], **fields: Any) -> None:
        """Set bookkeeping fields and append `entries` to the request's session chain, in one write."""
        ...

    def decide_recorded(
        self, request: PersonRequest, decision: Decision, entries: list[AuditDraft]
    ) -> PersonRequest:
        """`decide` with `entries` appended to the session's chain in the same write; the request as
        decided. AlreadyDecided (with the stored request) when someone decided first."""
        ...
