"""The messages people see in Slack: Block Kit with buttons, and a plain-text fallback.

Buttons carry only the request id; the Step Functions task token never leaves DynamoDB.

What people decide on is shown exactly: the account an approval acts on (name, id, e-mail), every
parameter (the amount, "partial refund" when it is less than the invoice, the invoice), a warning when the
account is not the requester's, and for a handoff the agent's draft in full — the text "Send agent's draft"
sends. A draft longer than a block can show is not cut: it is left out, and not offered for sending.

Customer and model text (the subject, CRM names and e-mails, the agent's notes and draft, a reason) never
becomes Slack formatting or a line of ours. In blocks it is a `plain_text` object (no mrkdwn, mentions,
links or emoji) beside or under a bold label of ours, so a ticket cannot print a "Recommendation:" that
looks real. In the fallback text and the outcome lines (mrkdwn) it is escaped (&, <, >), kept on one line
and quoted, or indented under a bar when it is a draft. Invisible and bidirectional-control characters are
shown as their code points (`[U+200B]`). Every text stays within Block Kit's limits (cut with an ellipsis).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from support_agent.models import Approval, CustomerSummary, Decision, Escalation, HandoffNotice, PersonRequest
from support_agent.money import money

# Block Kit's limits, in characters (docs.slack.dev, Block Kit reference): a header's text 150, a
# section's text 3,000 and each of its fields 2,000 (at most 10 fields), a text object 3,000 (a context
# line is kept to 2,000: it is one line under the message), a button's text 75, a confirm dialog's title
# 100 and text 300. Every text we build from data is cut to its limit with an ellipsis (`cut`).
HEADER_LIMIT = 150
SECTION_LIMIT = 3000
FIELD_LIMIT = 2000
CONTEXT_LIMIT = 2000
BUTTON_LIMIT = 75
CONFIRM_TITLE_LIMIT = 100
CONFIRM_TEXT_LIMIT = 300
CONFIRM_BUTTON_LIMIT = 30  # a confirm dialog's confirm and deny buttons
FIELDS_PER_SECTION = 10  # Block Kit's limit: five label/value rows
FALLBACK_DRAFT_LIMIT = 3000
_BREAKS = re.compile(r"[\r\n\v\f\x85\u2028\u2029]+")
_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{1,20}$")


def escape(text: str) -> str:
    """Slack's mrkdwn escaping: &, < and > (what makes mentions and links)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cut(text: str, limit: int) -> str:
    """`text` within `limit` characters, an ellipsis marking a cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


_HIDDEN = frozenset({"Cc", "Cf", "Co", "Cs", "Cn"})


def clean(text: str) -> str:
    """`text` with every control, invisible or bidirectional-control character shown as its code point
    (`[U+200B]`), so it can neither hide nor reorder what people read (line breaks and tabs kept)."""
    return "".join(
        f"[U+{ord(ch):04X}]" if ch not in "\n\t" and unicodedata.category(ch) in _HIDDEN else ch
        for ch in text
    )


def one_line(text: str) -> str:
    """`text` cleaned and on one line: breaks become a visible ⏎, so it cannot start a line of its own."""
    return _BREAKS.sub(" ⏎ ", clean(text)).replace("\t", " ").strip()


def draft_fits(draft: str) -> bool:
    """True when people can read all of what would be sent: the whole draft fits one block, and it has no
    invisible or control characters that would make what they read differ from what is sent."""
    return len(draft) <= SECTION_LIMIT and clean(draft) == draft


def account_line(c: CustomerSummary) -> str:
    """An account as people must see it before acting on it: name, id, e-mail."""
    return f"{c.name} · {c.id} · {c.email or 'no e-mail'}"


def customer_line(esc: Escalation) -> str:
    c = esc.customer
    if c is None:
        return f"Unknown customer ({esc.requester or 'no email'})"
    return f"{account_line(c)} · {c.plan}, {c.tenure_months}mo, {money(c.lifetime_value_cents)} LTV"


def title(request: PersonRequest) -> str:
    kind = "Escalation" if isinstance(request, Approval) else "Handoff"
    source = f" ({request.escalation.source})" if request.escalation.source else ""
    return f"Support {kind} — Ticket #{request.escalation.ticket_id}{source}"


def rows(request: PersonRequest) -> list[tuple[str, str]]:
    """The one-line facts, label (ours) and value (data), in order."""
    esc = request.escalation
    out = [
        ("Requester", esc.requester or "no e-mail"),
        ("Customer", customer_line(esc)),
        ("Issue", esc.issue or "—"),
    ]
    if isinstance(request, Approval):
        out.append(("Recommendation", esc.recommendation))
        if esc.target is not None:
            out.append(("Target account", account_line(esc.target)))
        out.extend((d.label, d.value) for d in esc.details)
    return out


def shows_draft(request: PersonRequest) -> bool:
    return isinstance(request, HandoffNotice) and bool(request.escalation.draft_reply.strip())


def plain_text(request: PersonRequest) -> str:
    """The notification fallback (and what the console stand-in prints): every value escaped and quoted
    on its line, the draft indented under a bar."""
    esc = request.escalation
    lines = [title(request)]
    lines.extend(f"{label}: “{escape(one_line(value))}”" for label, value in rows(request))
    lines.extend(f"Warning: {escape(one_line(w))}" for w in esc.warnings)
    lines.append(f"Agent's notes: “{escape(one_line(esc.agent_notes or '—'))}”")
    if shows_draft(request):
        draft = esc.draft_reply
        if draft_fits(draft) and len(draft) <= FALLBACK_DRAFT_LIMIT:
            lines.append("Agent's draft (“Send agent's draft” sends exactly this):")
            lines.extend(f"  │ {escape(clean(line))}" for line in _BREAKS.split(draft))
        else:
            lines.append(f"Agent's draft: {len(draft)} characters, too long to show; read it in the ticket.")
    lines.append("  ".join(f"[{o.label}]" for o in request.offers))
    if esc.ticket_url:
        lines.append(f"Ticket: {escape(one_line(esc.ticket_url))}")
    return "\n".join(lines)


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": cut(clean(text).strip() or "—", limit), "emoji": False}


def _label(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def _summary_blocks(request: PersonRequest) -> list[dict[str, Any]]:
    esc = request.escalation
    out: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": cut(title(request), HEADER_LIMIT)}}
    ]
    fields: list[dict[str, Any]] = []
    for label, value in rows(request):
        fields += [_label(f"*{label}*"), _plain(one_line(value), FIELD_LIMIT)]
    for start in range(0, len(fields), FIELDS_PER_SECTION):
        out.append({"type": "section", "fields": fields[start : start + FIELDS_PER_SECTION]})
    if esc.warnings:
        out.append({"type": "section", "text": _label(":warning: *Check the account before deciding*")})
        out.append({"type": "section", "text": _plain("\n".join(esc.warnings), SECTION_LIMIT)})
    out.append({"type": "section", "text": _label("*Agent's notes*")})
    out.append({"type": "section", "text": _plain(esc.agent_notes or "—", SECTION_LIMIT)})
    if shows_draft(request):
        draft = esc.draft_reply
        if draft_fits(draft):
            out.append(
                {
                    "type": "section",
                    "text": _label("*Agent's draft* — “Send agent's draft” sends exactly this:"),
                }
            )
            out.append({"type": "section", "text": {"type": "plain_text", "text": draft, "emoji": False}})
        else:
            note = (
                f"*Agent's draft* ({len(draft)} characters) cannot be shown here in full: read it in the "
                "ticket. It cannot be sent from here."
            )
            out.append({"type": "section", "text": _label(note)})
    return out


def blocks(request: PersonRequest) -> list[dict[str, Any]]:
    """Block Kit for the request, with one button per offer."""
    out = _summary_blocks(request)
    url = request.escalation.ticket_url
    if url:
        link = f"<{escape(one_line(url)).replace('|', '%7C')}|Open the ticket>"
        out.append({"type": "context", "elements": [{"type": "mrkdwn", "text": cut(link, CONTEXT_LIMIT)}]})
    elements = []
    for offer in request.offers:
        button: dict[str, Any] = {
            "type": "button",
            "action_id": offer.kind,
            "text": {"type": "plain_text", "text": cut(offer.label, BUTTON_LIMIT)},
            "value": request.request_id,
        }
        if offer.style:
            button["style"] = offer.style
        if offer.confirm:
            button["confirm"] = {
                "title": {"type": "plain_text", "text": "Are you sure?"},
                "text": {"type": "plain_text", "text": cut(offer.confirm, CONFIRM_TEXT_LIMIT)},
                "confirm": {"type": "plain_text", "text": cut(offer.label, CONFIRM_BUTTON_LIMIT)},
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
    """Who decided what, and when (mrkdwn: every text from outside escaped and on one line)."""
    who = f"<@{decision.by}>" if _SLACK_USER.match(decision.by) else escape(one_line(decision.by or "nobody"))
    if decision.kind == "approve":
        what = one_line(request.escalation.recommendation)
        return f"Approved by {who} at {when} — {escape(what[:1].lower() + what[1:])}"
    if decision.kind == "partial" and isinstance(request, Approval) and request.partial:
        amount = request.partial.show(decision.amount or 0)
        return f"Partially approved by {who} at {when} — {escape(request.partial.label)} of {amount}"
    if decision.kind == "deny":
        return f"Denied by {who} at {when} — {escape(one_line(decision.reason))}"
    if decision.kind == "reply_manually":
        return f"Answered manually by {who} at {when}"
    if decision.kind == "take_over":
        return f"Taken over by {who} at {when}"
    if decision.kind == "send_draft":
        return f"Agent's draft sent by {who} at {when}"
    if decision.kind == "expired":
        return f"This request expired at {when} without a decision; the ticket went to the team."
    return f"{decision.kind.replace('_', ' ').capitalize()} by {who} at {when}"
