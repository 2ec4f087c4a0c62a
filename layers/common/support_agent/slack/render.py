"""The messages people see in Slack: Block Kit with buttons, and a plain-text fallback.

Buttons carry only the request id; the Step Functions task token never leaves DynamoDB. Customer and
model text is escaped, so it cannot mention people (`<!channel>`) or disguise links; every text stays
within Block Kit's limits (cut with an ellipsis).
"""

from __future__ import annotations

from typing import Any

from support_agent.models import Approval, Decision, Escalation, PersonRequest
from support_agent.money import money

HEADER_LIMIT = 150
SECTION_LIMIT = 3000
CONTEXT_LIMIT = 2000


def escape(text: str) -> str:
    """Slack's mrkdwn escaping: &, < and > (what makes mentions and links)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cut(text: str, limit: int) -> str:
    """`text` within `limit` characters, an ellipsis marking a cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def customer_line(esc: Escalation) -> str:
    c = esc.customer
    if c is None:
        return f"Unknown customer ({esc.requester or 'no email'})"
    return f"{c.name} ({c.plan}, {c.tenure_months}mo, {money(c.lifetime_value_cents)} LTV)"


def summary_lines(request: PersonRequest) -> list[tuple[str, str]]:
    esc = request.escalation
    return [
        ("Customer", customer_line(esc)),
        ("Issue", esc.issue),
        ("Agent", esc.agent_notes or "—"),
        ("Recommendation", esc.recommendation),
    ]


def title(request: PersonRequest) -> str:
    kind = "Escalation" if isinstance(request, Approval) else "Handoff"
    return f"Support {kind} — Ticket #{request.escalation.ticket_id}"


def plain_text(request: PersonRequest) -> str:
    """The notification fallback (and what the console stand-in prints)."""
    lines = [title(request), *(f"{k}: {v}" for k, v in summary_lines(request))]
    lines.append("  ".join(f"[{o.label}]" for o in request.offers))
    if request.escalation.ticket_url:
        lines.append(f"Ticket: {request.escalation.ticket_url}")
    return "\n".join(lines)


def _summary_blocks(request: PersonRequest) -> list[dict[str, Any]]:
    fields = "\n".join(f"*{k}:* {escape(v)}" for k, v in summary_lines(request))
    return [
        {"type": "header", "text": {"type": "plain_text", "text": cut(title(request), HEADER_LIMIT)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": cut(fields, SECTION_LIMIT)}},
    ]


def blocks(request: PersonRequest) -> list[dict[str, Any]]:
    """Block Kit for the request, with one button per offer."""
    out = _summary_blocks(request)
    url = request.escalation.ticket_url
    if url:
        link = f"<{escape(url)}|Open the ticket>"
        out.append({"type": "context", "elements": [{"type": "mrkdwn", "text": cut(link, CONTEXT_LIMIT)}]})
    elements = []
    for offer in request.offers:
        button: dict[str, Any] = {
            "type": "button",
            "action_id": offer.kind,
            "text": {"type": "plain_text", "text": offer.label},
            "value": request.request_id,
        }
        if offer.style:
            button["style"] = offer.style
        if offer.confirm:
            button["confirm"] = {
                "title": {"type": "plain_text", "text": "Are you sure?"},
                "text": {"type": "plain_text", "text": offer.confirm},
                "confirm": {"type": "plain_text", "text": offer.label},
                "deny": {"type": "plain_text", "text": "Cancel"},
            }
        elements.append(button)
    out.append({"type": "actions", "block_id": "decision", "elements": elements})
    return out


def decided_blocks(request: PersonRequest, decision: Decision, when: str) -> list[dict[str, Any]]:
    """The message after a decision: no buttons, who decided what and when."""
    line = cut(outcome_line(request, decision, when), CONTEXT_LIMIT)
    return [*_summary_blocks(request), {"type": "context", "elements": [{"type": "mrkdwn", "text": line}]}]


def outcome_line(request: PersonRequest, decision: Decision, when: str) -> str:
    who = f"<@{decision.by}>" if decision.by else "nobody"
    if decision.kind == "approve":
        what = request.escalation.recommendation
        return f"Approved by {who} at {when} — {escape(what[:1].lower() + what[1:])}"
    if decision.kind == "partial" and isinstance(request, Approval) and request.partial:
        amount = request.partial.show(decision.amount or 0)
        return f"Partially approved by {who} at {when} — {request.partial.label} of {amount}"
    if decision.kind == "deny":
        return f"Denied by {who} at {when} — {escape(decision.reason)}"
    if decision.kind == "reply_manually":
        return f"Answered manually by {who} at {when}"
    if decision.kind == "take_over":
        return f"Taken over by {who} at {when}"
    if decision.kind == "send_draft":
        return f"Agent's draft sent by {who} at {when}"
    if decision.kind == "expired":
        return f"This request expired at {when} without a decision; the ticket went to the team."
    return f"{decision.kind.replace('_', ' ').capitalize()} by {who} at {when}"
