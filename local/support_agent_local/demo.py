"""`support-agent demo`: sample tickets through the whole system on the embedded emulation.

Each ticket goes through the real path: a signed webhook to the Intake handler, the AgentQueue to the
AgentStep handler, the approval state machine, the NotifyQueue to the Notifier (which posts to a Slack
stand-in over HTTP), a signed interactive request to the SlackInteraction handler, and back.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support_agent.adapters.embedded import EmbeddedBilling
from support_agent.models import Approval, Session
from support_agent.money import money
from support_agent.rules.audit_proof import digest_log, export_lines, verify_export
from support_agent.slack.render import plain_text

from support_agent_local import slack_requests
from support_agent_local.backends import RealBackends
from support_agent_local.emulator import EmbeddedAws, metrics_off
from support_agent_local.events import signed_webhook_event
from support_agent_local.functions import invoke
from support_agent_local.runtime import Poller

BUNDLED = Path(__file__).resolve().parent / "data" / "demo_tickets.jsonl"


@dataclass
class TicketRun:
    name: str
    subject: str
    session_id: str = ""
    route: str = ""
    outcome: str = ""
    reason: str = ""
    actions: list[dict[str, Any]] = field(default_factory=list)
    decision: str = ""
    replies: list[str] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0
    slack: list[str] = field(default_factory=list)


def load_tickets(path: Path) -> list[dict[str, Any]]:
    """CSV or JSON lines with subject, body, requester_email and optional customer_id (and name, decision)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
    else:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    for i, row in enumerate(rows, 1):
        missing = [k for k in ("subject", "body", "requester_email") if not row.get(k)]
        if missing:
            raise SystemExit(f"error: {path} row {i} lacks {', '.join(missing)}")
        row.setdefault("name", f"ticket-{i}")
    return rows


CONSOLE_CHOICES = {
    # decision kind → (key, what to type after it)
    "approve": ("a", ""),
    "partial": ("p", "AMOUNT"),
    "deny": ("d", "REASON"),
    "reply_manually": ("r", "TEXT"),
}


def choose(approval: Approval, scripted: dict[str, Any] | None, interactive: bool) -> dict[str, Any]:
    """The console stand-in for a person in Slack: the request's own offers, as keys to type."""
    if not interactive:
        return scripted or {"action": "approve"}
    print("\n" + plain_text(approval))
    offered = {o.kind: CONSOLE_CHOICES[o.kind] for o in approval.offers if o.kind in CONSOLE_CHOICES}
    options = ", ".join(f"{key}={kind}" + (f" {arg}" if arg else "") for kind, (key, arg) in offered.items())
    answer = input(f"Decide ({options}): ").strip()
    key, _, rest = answer.partition(" ")
    kind = next((k for k, (letter, _arg) in offered.items() if letter == key[:1].lower()), "approve")
    return {"action": kind, "value": rest or ("declined" if kind == "deny" else "")}


def webhook_for(
    stack: EmbeddedAws, systems: RealBackends | None, number: int, ticket: dict[str, Any]
) -> dict[str, Any]:
    """The signed webhook event that brings one demo ticket in: ours (generic), or Zendesk's when the
    ticket is opened in the Zendesk stand-in (real backends)."""
    if systems is not None:
        customer = next(
            cid
            for cid, uid in systems.zendesk_users.items()
            if systems.zendesk.users[int(uid)]["email"] == ticket["requester_email"].lower()
        )
        payload = systems.open_ticket(customer, ticket["subject"], ticket["body"])
        return signed_webhook_event("zendesk", stack.secret("WebhookSecretName")["zendesk"], payload)
    fields: dict[str, Any] = {"customer_id": ticket["customer_id"]} if ticket.get("customer_id") else {}
    ticket_id = str(ticket.get("id") or f"D-{1000 + number}")
    payload = {
        "event_id": f"demo-{number}-{time.time_ns()}",
        "ticket": {
            **fields,
            "id": ticket_id,
            "subject": ticket["subject"],
            "body": ticket["body"],
            "requester": {"email": ticket["requester_email"]},
            "url": f"https://support.example.com/tickets/{ticket_id}",
        },
    }
    return signed_webhook_event("generic", stack.secret("WebhookSecretName")["generic"], payload)


Decide = Callable[[Approval], dict[str, Any]]
SETTLE_SECONDS = 20.0
MAX_DECISIONS = 4  # approvals one ticket may ask for in a row (a refund, then a deletion, ...)


@dataclass
class Driven:
    """One ticket through the system: its session, the decisions people made, what reached Slack."""

    session_id: str
    session: Session | None
    decisions: list[tuple[Approval, dict[str, Any]]]
    slack: list[str]
    intake_seconds: float


def decide_in_slack(stack: EmbeddedAws, approval: Approval, picked: dict[str, Any]) -> None:
    """Send a person's decision the way Slack does: a signed button click, or a submitted modal."""
    if picked["action"] in {"partial", "deny", "reply_manually"}:
        request = slack_requests.view_submission(
            approval.approval_id, picked["action"], picked.get("value", "")
        )
    else:
        request = slack_requests.block_action(approval.approval_id, "approve")
    signing = stack.secret("SlackSecretName")["signing_secret"]
    with stack.environment_of("SlackInteractionFunction"):
        invoke("slack_interaction", slack_requests.signed_event(request, signing))


def drive(
    stack: EmbeddedAws,
    poller: Poller,
    systems: RealBackends | None,
    number: int,
    ticket: dict[str, Any],
    decide: Decide,
) -> Driven:
    """A ticket through intake, the agent, and every approval it asks for (decided by `decide`)."""
    assert stack.slack is not None
    posted = len(stack.slack.of("chat.postMessage"))
    event = webhook_for(stack, systems, number, ticket)
    started = time.perf_counter()
    with stack.environment_of("IntakeFunction"):
        answer = invoke("intake", event)
    intake = time.perf_counter() - started
    session_id = json.loads(answer["body"]).get("session_id", "")
    decisions: list[tuple[Approval, dict[str, Any]]] = []
    session = None
    if session_id:
        settle(poller, session_id)
        session = stack.sessions().get(session_id)
    for _ in range(MAX_DECISIONS):
        if not (session and session.state.value == "awaiting_approval" and session.approval_id):
            break
        approval = stack.approvals().get(session.approval_id)
        if not isinstance(approval, Approval):
            break
        picked = decide(approval)
        decisions.append((approval, picked))
        decide_in_slack(stack, approval, picked)
        settle(poller, session_id)
        session = stack.sessions().get(session_id)
    slack = [str(m.get("text", "")) for m in stack.slack.of("chat.postMessage")[posted:]]
    return Driven(session_id, session, decisions, slack, intake)


def settle(poller: Poller, session_id: str) -> None:
    """Wait for the session to settle; one that never does is left as it is (reported as unfinished)."""
    with contextlib.suppress(TimeoutError):
        poller.settle(session_id, timeout=SETTLE_SECONDS)


def _console_choice(approval: Approval, ticket: dict[str, Any], interactive: bool) -> dict[str, Any]:
    return choose(approval, ticket.get("decision"), interactive)


def describe_decision(approval: Approval, picked: dict[str, Any]) -> str:
    """A decision as people read it: `partial ($99.50)`, `deny (reason)`."""
    value = str(picked.get("value") or "")
    if picked["action"] == "partial" and approval.partial:
        amount = approval.partial.parse(value)
        value = approval.partial.show(amount) if amount else value
    return str(picked["action"]) + (f" ({value})" if value else "")


def one_line(text: str, width: int) -> str:
    """`text` on one line within `width` characters (an ellipsis marks a cut)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def actions_text(actions: list[dict[str, Any]], decision: str) -> str:
    """What ran and who decided: `issue_refund $39.50 (partial by dana.lead)`; a decision that ran nothing too."""
    parts = []
    for action in actions:
        amount = (action.get("args") or {}).get("amount_cents")
        shown = action["tool"] + (f" {money(int(amount))}" if isinstance(amount, int) else "")
        if action.get("approved_by"):
            kind = "partial" if decision.startswith("partial") else "approved"
            shown += f" ({kind} by {action['approved_by']})"
        parts.append(shown)
    if not actions and decision:
        parts.append(f"- ({decision})")
    return ", ".join(parts) or "-"


def refunds_made(stack: EmbeddedAws, systems: RealBackends | None) -> list[str]:
    """Every refund made, as `invoice amount`, from the billing system in use."""
    if systems is not None and systems.stripe is not None:
        import stripe

        client = stripe.StripeClient(systems.stripe.api_key, base_addresses={"api": systems.stripe.url})
        return [
            f"{r.charge or r.payment_intent} {money(r.amount, r.currency)}"
            for r in client.refunds.list().data
        ]
    made = EmbeddedBilling(stack.ref("EmbeddedDataTable")).refunds()
    return [f"{x.invoice_id} {money(x.amount_cents, x.currency)}" for x in made]


def run_demo(
    tickets: list[dict[str, Any]],
    interactive: bool,
    out: Any = sys.stdout,
    as_json: bool = False,
    backends: str = "embedded",
) -> list[TicketRun]:
    provider = (
        "Claude (ANTHROPIC_API_KEY is set)"
        if os.environ.get("ANTHROPIC_API_KEY")
        else "offline provider (no ANTHROPIC_API_KEY: documented fallback, not the product)"
    )

    def say(*parts: Any) -> None:
        print(*parts, file=sys.stderr if as_json else out)

    systems_text = (
        "Zendesk stand-in, localstripe, customer API over HTTP, Cognito on moto"
        if backends == "real"
        else "the embedded sample systems"
    )
    say(f"Support Agent demo — model: {provider}; AWS: embedded emulation (moto); Slack: console stand-in")
    say(f"Backends: {systems_text}")
    runs: list[TicketRun] = []
    # Keep the console for the demo's own output: handler logs at WARNING, metrics (EMF lines) off.
    with contextlib.ExitStack() as running:
        running.enter_context(metrics_off())
        systems = running.enter_context(RealBackends()) if backends == "real" else None
        stack = running.enter_context(EmbeddedAws(parameters={"LogLevel": "WARNING"}))
        if systems is not None:
            systems.attach(stack)
        poller = Poller(stack)
        for i, ticket in enumerate(tickets, 1):
            run = TicketRun(ticket["name"], ticket["subject"])
            started = time.perf_counter()
            driven = drive(
                stack,
                poller,
                systems,
                i,
                ticket,
                functools.partial(_console_choice, ticket=ticket, interactive=interactive),
            )
            run.session_id, session = driven.session_id, driven.session
            run.decision = "; ".join(describe_decision(a, p) for a, p in driven.decisions)
            if session:
                run.route, run.outcome, run.reason = (
                    session.route or "",
                    session.state.value,
                    session.reason or "",
                )
                run.actions, run.replies, run.tokens = (
                    session.actions,
                    session.replies,
                    session.tokens_used,
                )
            run.slack = driven.slack
            run.seconds = time.perf_counter() - started
            runs.append(run)
            say(
                f"[{i:>2}/{len(tickets)}] {run.name:<16} {run.route or '-':<9} → {run.outcome:<10} {run.reason}"
            )
        # As an operator would: verify and digest every chain's head, then export the trail with its seal.
        trail, signer = stack.audit(), stack.audit_signer()
        _digests, report = digest_log(trail, signer)
        export = Path(".demo") / f"audit-{time.strftime('%Y%m%dT%H%M%S')}.jsonl"
        export.parent.mkdir(exist_ok=True)
        with export.open("w") as handle:
            for line in export_lines(trail.all_entries(), signer, source="demo"):
                handle.write(line + "\n")
        sealed = verify_export(export.read_text().splitlines(), key=trail.key, signer=signer).ok
        refunds = refunds_made(stack, systems)
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "ticket": r.name,
                        "session_id": r.session_id,
                        "route": r.route,
                        "outcome": r.outcome,
                        "reason": r.reason,
                        "decision": r.decision,
                        "actions": r.actions,
                        "replies": r.replies,
                        "slack": r.slack,
                        "tokens": r.tokens,
                    }
                    for r in runs
                ],
                indent=2,
                ensure_ascii=False,
            ),
            file=out,
        )
        return runs
    say("")
    say(
        f"{'ticket':<17}{'route':<10}{'outcome':<11}{'actions executed (decision)':<52}{'tokens':>8}{'time':>7}"
    )
    for r in runs:
        say(
            f"{r.name:<17}{r.route:<10}{r.outcome:<11}{one_line(actions_text(r.actions, r.decision), 51):<52}{r.tokens:>8}{r.seconds:>6.1f}s"
        )
        if r.outcome == "handoff" and r.reason:
            say(f"{'':<17}why: {one_line(r.reason, 100)}")
        if r.replies:
            say(f"{'':<17}reply: {one_line(r.replies[-1], 98)}")
    escalated = [r for r in runs if r.slack]
    if escalated:
        say("")
        say("Slack messages (what the people deciding saw):")
        for r in escalated:
            for message in r.slack:
                say(f"--- {r.name}")
                say("\n".join(f"    {line}" for line in message.splitlines()))
    say("")
    say(f"refunds executed: {len(refunds)} " + ", ".join(refunds))
    say(
        f"audit trail: {report.entries} entries in {report.sessions} sessions, chain {'verified' if report.ok else 'BROKEN'} (MACs, session heads), digested; exported to {export}, seal {'verified' if sealed else 'BROKEN'}"
    )
    return runs
