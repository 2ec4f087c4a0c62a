"""The context people get with an approval request or a handoff, built from what the run has seen."""

from __future__ import annotations

from support_agent import clock
from support_agent.agent.identity import same_mailbox
from support_agent.agent.loop import Run
from support_agent.models import Customer, CustomerSummary, Detail, Escalation, RequesterBinding


def escalation_for(
    run: Run,
    *,
    issue: str,
    recommendation: str,
    draft: str = "",
    target: Customer | None = None,
    details: list[Detail] | None = None,
) -> Escalation:
    """What the person deciding needs: ticket, customer, why it escalated, the agent's notes and proposal,
    and for an approval the account it acts on with its exact parameters (and a warning when that account
    is not the requester's)."""
    ticket = run.session.ticket
    customer = run.ctx.observed.get("customer")
    shown = customer if isinstance(customer, Customer) else None
    return Escalation(
        ticket_id=ticket.id,
        source=ticket.source,
        ticket_url=ticket.url,
        subject=ticket.subject,
        requester=ticket.requester.email or f"helpdesk user {ticket.requester.id}",
        customer=_summary(shown) if shown is not None else None,
        category=run.triage.category,
        matched_rules=run.triage.matched_rules,
        issue=issue[:500],
        agent_notes=" ".join(run.notes)[-1000:],
        recommendation=recommendation,
        target=_summary(target) if target is not None else None,
        details=details or [],
        warnings=target_warnings(run.ctx.requester, ticket.requester.email or "", target, shown),
        draft_reply=draft,
    )


def target_warnings(
    binding: RequesterBinding | None, requester: str, target: Customer | None, shown: Customer | None
) -> list[str]:
    """Why the account an approval acts on may not be the requester's (empty when it is)."""
    if target is None:
        return []
    warnings = []
    if binding is None or binding.status != "bound" or binding.customer_id != target.id:
        warnings.append("The target account is not the account bound to the requester.")
    if binding is None or not same_mailbox(target.email, binding.mailbox):
        warnings.append(f"The target account's e-mail ({target.email}) is not the requester's ({requester}).")
    if shown is not None and shown.id != target.id:
        warnings.append(f"The customer shown ({shown.id}) is not the target account ({target.id}).")
    return warnings


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
