"""The escalation message people see in Slack: Block Kit with buttons, and a plain-text fallback.

Buttons carry only the approval id; the Step Functions task token never leaves DynamoDB.
"""

from __future__ import annotations

from typing import Any

from support_agent.approvals import Approval, Decision

BUTTONS: dict[str, list[tuple[str, str, str | None]]] = {
    # tool → (action_id, label, style)
    "issue_refund": [
        ("approve", "Approve Refund", "primary"),
        ("partial", "Partial Refund", None),
        ("deny", "Deny", "danger"),
        ("reply_manually", "Reply Manually", None),
    ],
    "delete_account": [
        ("approve", "Approve Deletion", "danger"),
        ("deny", "Deny", None),
        ("reply_manually", "Reply Manually", None),
    ],
    "_handoff": [("take_over", "Take over", "primary"), ("send_draft", "Send agent's draft", None)],
}


def money(cents: int) -> str:
    return f"${cents / 100:,.2f}".replace(".00", "")


def customer_line(esc: dict[str, Any]) -> str:
    c = esc.get("customer")
    if not c:
        return f"Unknown customer ({esc.get('requester', 'no email')})"
    return f"{c['name']} ({c['plan']}, {c['tenure_months']}mo, {money(int(c['lifetime_value_cents']))} LTV)"


def summary_lines(approval: Approval) -> list[tuple[str, str]]:
    esc = approval.escalation
    return [
        ("Customer", customer_line(esc)),
        ("Issue", str(esc.get("issue", ""))),
        ("Agent", str(esc.get("agent_notes") or "—")),
        ("Recommendation", str(esc.get("recommendation", ""))),
    ]


def title(approval: Approval) -> str:
    kind = "Handoff" if approval.kind == "handoff" else "Escalation"
    return f"Support {kind} — Ticket #{approval.escalation.get('ticket_id', '?')}"


def plain_text(approval: Approval) -> str:
    """The notification fallback (and what the console stand-in prints)."""
    lines = [title(approval), *(f"{k}: {v}" for k, v in summary_lines(approval))]
    buttons = BUTTONS.get(approval.tool or "_handoff", BUTTONS["_handoff"])
    lines.append("  ".join(f"[{label}]" for _, label, _ in buttons))
    if approval.escalation.get("ticket_url"):
        lines.append(f"Ticket: {approval.escalation['ticket_url']}")
    return "\n".join(lines)


def blocks(approval: Approval) -> list[dict[str, Any]]:
    """Block Kit for the escalation message."""
    url = approval.escalation.get("ticket_url")
    fields = "\n".join(f"*{k}:* {v}" for k, v in summary_lines(approval))
    out: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title(approval)[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": fields[:3000]}},
    ]
    if url:
        out.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{url}|Open the ticket>"}]})
    buttons = BUTTONS.get(approval.tool or "_handoff", BUTTONS["_handoff"])
    elements = []
    for action_id, label, style in buttons:
        button: dict[str, Any] = {
            "type": "button",
            "action_id": action_id,
            "text": {"type": "plain_text", "text": label},
            "value": approval.approval_id,
        }
        if style:
            button["style"] = style
        elements.append(button)
    out.append({"type": "actions", "block_id": "decision", "elements": elements})
    return out


def decided_blocks(approval: Approval, decision: Decision, when: str) -> list[dict[str, Any]]:
    """The message after a decision: no buttons, who decided what and when."""
    fields = "\n".join(f"*{k}:* {v}" for k, v in summary_lines(approval))
    return [
        {"type": "header", "text": {"type": "plain_text", "text": title(approval)[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": fields[:3000]}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": outcome_line(approval, decision, when)}]},
    ]


def outcome_line(approval: Approval, decision: Decision, when: str) -> str:
    who = f"<@{decision.by}>" if decision.by else "nobody"
    amount = approval.args.get("amount_cents")
    if decision.kind == "approve":
        what = (
            f"full refund of {money(int(amount))}"
            if approval.tool == "issue_refund" and amount
            else approval.tool
        )
        return f"Approved by {who} at {when} — {what}"
    if decision.kind == "partial":
        return f"Partially approved by {who} at {when} — refund of {money(int(decision.amount_cents or 0))}"
    if decision.kind == "deny":
        return f"Denied by {who} at {when} — {decision.reason}"
    if decision.kind == "reply_manually":
        return f"Answered manually by {who} at {when}"
    if decision.kind == "take_over":
        return f"Taken over by {who} at {when}"
    if decision.kind == "send_draft":
        return f"Agent's draft sent by {who} at {when}"
    if decision.kind == "expired":
        return f"This request expired at {when} without a decision; the ticket went to the team."
    return f"{decision.kind.replace('_', ' ').capitalize()} by {who} at {when}"
