"""The context people get with an approval request or a handoff, built from what the run has seen."""

from __future__ import annotations

from support_agent import clock
from support_agent.agent.loop import Run
from support_agent.models import Customer, CustomerSummary, Escalation


def escalation_for(run: Run, *, issue: str, recommendation: str, draft: str = "") -> Escalation:
    """What the person deciding needs: ticket, customer, why it escalated, the agent's notes and proposal."""
    ticket = run.session.ticket
    customer = run.ctx.observed.get("customer")
    return Escalation(
        ticket_id=ticket.id,
        ticket_url=ticket.url,
        subject=ticket.subject,
        requester=ticket.requester.email or f"helpdesk user {ticket.requester.id}",
        customer=_summary(customer) if isinstance(customer, Customer) else None,
        category=run.triage.category,
        matched_rules=run.triage.matched_rules,
        issue=issue[:500],
        agent_notes=" ".join(run.notes)[-1000:],
        recommendation=recommendation,
        draft_reply=draft,
    )


def issue_of(run: Run) -> str:
    """The customer's issue in one line: the subject, else the start of the body."""
    return run.session.ticket.subject or run.session.ticket.body[:120]


def _summary(customer: Customer) -> CustomerSummary:
    return CustomerSummary(
        id=customer.id,
        name=customer.name,
        email=customer.email,
        plan=customer.plan,
        tenure_months=customer.tenure_months(clock.now().date().isoformat()),
        lifetime_value_cents=customer.lifetime_value_cents,
    )
