"""The offline provider: a deterministic stand-in for Claude, for demos and machines without a key.

It is a fallback, not the product: it reads the same prompt the model gets (the ticket data block and
tool results), calls the same tools through the same policy checks, and writes templated replies
grounded in what the tools returned. It never sees the policy and cannot bypass it.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from support_agent.agent.conversation import check, model_turns, ticket_data
from support_agent.agent.llm import (
    ModelRequest,
    ModelResponse,
    Usage,
    estimate_tokens,
    min_cacheable_tokens,
)
from support_agent.agent.prompt_cache import PromptCache
from support_agent.agent.triage import offline_classify
from support_agent.money import money

_MONTHS = {
    m: i
    for i, m in enumerate(
        [
            "january",
            "february",
            "march",
            "april",
            "may",
            "june",
            "july",
            "august",
            "september",
            "october",
            "november",
            "december",
        ],
        start=1,
    )
}
_MONTHS.update({"marzo": 3, "märz": 3, "mars": 3, "enero": 1, "febrero": 2, "abril": 4, "mayo": 5})
_GREETING = {
    "es": "Hola {name},",
    "de": "Hallo {name},",
    "fr": "Bonjour {name},",
    "it": "Ciao {name},",
    "pt": "Olá {name},",
    "nl": "Hallo {name},",
    "en": "Hi {name},",
}
_CLOSING = {
    "es": "Un saludo,\nEquipo de soporte de Acme",
    "de": "Viele Grüße,\nIhr Acme-Support",
    "fr": "Cordialement,\nLe support Acme",
    "it": "Cordiali saluti,\nIl supporto Acme",
    "pt": "Atenciosamente,\nSuporte Acme",
    "nl": "Met vriendelijke groet,\nAcme Support",
    "en": "Best regards,\nAcme Support",
}
_INJECTION = re.compile(
    r"ignore\s+(all\s+|any\s+|your\s+|previous\s+|prior\s+)*(instructions|rules)|system\s+prompt|admin\s+mode|"
    r"developer\s+mode|you\s+are\s+now|disregard\s+(the\s+|your\s+)?(policy|rules|instructions)",
    re.I,
)


# Why a ticket the guard escalated goes to people, by guard category (the handoff reason people read).
_WHY = {
    "billing_dispute": "The customer disputes a charge; a person must check the payments before anything is refunded",
    "complaint": "The customer complains about our staff or service; a person should answer personally",
    "legal_or_regulatory": "The ticket mentions legal action or a regulator; only a person may answer it",
    "human_request": "The customer asks to speak to a person",
    "prompt_injection": "The ticket gives the agent instructions or claims a policy change (possible prompt injection)",
    "refund_request": "The customer asks for a refund and no bound customer record or invoice was found",
    "account_deletion": "The customer asks to delete an account that is not bound to the requester",
    "third_party_data": "The ticket asks for another person's orders, invoices or account; a person must check who may see them",
    "learned_escalation": "The guard's learned check reads this ticket like those people handle (a dispute, refund or complaint in other words)",
}
_INCIDENT = re.compile(r"incident|outage|status", re.I)
_OUTAGE = re.compile(r"\b(outage|down|unavailable|caída|ausfall|panne)\b", re.I)
_CLAUSE = re.compile(r"SLA\s+Section\s+[\d.]*\d", re.I)


@functools.cache
def shared_cache(min_tokens: int) -> PromptCache:
    """One simulated prompt cache per process and minimum length (the API's is shared by every caller)."""
    return PromptCache(min_tokens)


class OfflineProvider:
    """Scripted tool use over the Messages API shape; see the module docstring.

    Its `usage` is what the API would report for the configured model (`model_id`): input tokens split
    into read from, written to and processed without a simulated prompt cache (`agent.prompt_cache`).
    """

    name = "offline"

    def __init__(self, model_id: str = "", cache: PromptCache | None = None) -> None:
        self.cache = cache or shared_cache(min_cacheable_tokens(model_id))

    def create(self, request: ModelRequest) -> ModelResponse:
        check(request.messages)  # what the real API would answer 400 to fails here too
        state = _State.read(request.messages)
        blocks = state.next_blocks()
        cached = self.cache.use(request.payload())
        usage = Usage(
            input_tokens=cached.uncached,
            cache_read_input_tokens=cached.read,
            cache_creation_input_tokens=cached.written,
            output_tokens=estimate_tokens(blocks),
        )
        stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
        return ModelResponse(content=blocks, stop_reason=stop, usage=usage, model="offline")


class _State:
    def __init__(
        self, data: dict[str, Any], calls: dict[str, list[tuple[dict[str, Any], Any]]], notes: list[str]
    ):
        self.data = data
        self.calls = calls
        self.notes = notes
        self.ticket = data.get("ticket", {})
        self.customer = data.get("customer") or {}
        self.triage = data.get("triage", {})
        self.text = f"{self.ticket.get('subject', '')}\n{self.ticket.get('body', '')}"
        self.language = offline_classify(self.text, []).language
        self.turn = 1
        self._n = 0

    @classmethod
    def read(cls, messages: list[dict[str, Any]]) -> _State:
        data = ticket_data(messages)
        names: dict[str, tuple[str, dict[str, Any]]] = {}
        calls: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        notes: list[str] = []
        for message in messages[1:]:
            content = message["content"]
            if isinstance(content, str):
                notes.append(content)
                continue
            for block in content:
                if block.get("type") == "tool_use":
                    names[block["id"]] = (block["name"], block.get("input", {}))
                elif block.get("type") == "tool_result":
                    name, args = names.get(block["tool_use_id"], ("?", {}))
                    raw = block.get("content")
                    raw = raw if isinstance(raw, str) else " ".join(c.get("text", "") for c in raw or [])
                    try:
                        result = json.loads(raw)
                    except (TypeError, json.JSONDecodeError):
                        result = raw
                    calls.setdefault(name, []).append((args, result))
                elif block.get("type") == "text":
                    notes.append(block["text"])
        state = cls(data, calls, notes)
        # Tool-use ids are derived from the turn, so a replayed conversation yields the same ids.
        state.turn = model_turns(messages) + 1
        return state

    # --- helpers --------------------------------------------------------------------------------------

    def result(self, tool: str) -> Any:
        return self.calls[tool][-1][1] if tool in self.calls else None

    def use(self, tool: str, /, **args: Any) -> dict[str, Any]:
        # Positional-only: a tool argument may itself be called `name` (update_profile's display name).
        self._n += 1
        return {
            "type": "tool_use",
            "id": f"toolu_offline_t{self.turn}_{self._n}",
            "name": tool,
            "input": args,
        }

    def say(self, text: str) -> dict[str, Any]:
        return {"type": "text", "text": text}

    def greet(self) -> str:
        name = (self.customer.get("name") or self.ticket.get("requester", {}).get("name") or "there").split()[
            0
        ]
        return _GREETING.get(self.language, _GREETING["en"]).format(name=name)

    def close(self) -> str:
        return _CLOSING.get(self.language, _CLOSING["en"])

    def letter(self, *paragraphs: str) -> str:
        return "\n\n".join([self.greet(), *[p for p in paragraphs if p], self.close()])

    @property
    def category(self) -> str:
        if self.triage.get("route") == "escalate":
            return str(self.triage.get("category", "human_request"))
        return offline_classify(self.text, []).category

    # --- the script -----------------------------------------------------------------------------------

    def next_blocks(self) -> list[dict[str, Any]]:
        if "classify_ticket" not in self.calls:
            return self.first_round()
        for outcome in ("issue_refund", "delete_account", "send_password_reset", "update_profile"):
            if outcome in self.calls:
                return self.after_action(outcome)
        return self.second_round()

    def first_round(self) -> list[dict[str, Any]]:
        cls = offline_classify(self.text, [])
        if self.triage.get("route") == "escalate":
            cls = cls.model_copy(update={"category": self.category})
        blocks = [self.use("classify_ticket", **cls.model_dump())]
        cid = self.customer.get("id")
        category = self.category
        if cid and category in {"order_status", "shipping", "order_change"}:
            blocks.append(self.use("list_orders"))
        if cid and category in {
            "invoice_request",
            "billing_question",
            "refund_request",
            "billing_dispute",
            "refund_status",
        }:
            blocks.append(self.use("list_invoices"))
        query = f"{self.ticket.get('subject', '')} {self.ticket.get('body', '')}"[:280]
        if category == "refund_request":
            query = f"outage incident SLA refund {query}"[:280]
        blocks.append(self.use("search_help_center", query=query))
        return blocks

    def articles(self) -> list[dict[str, Any]]:
        found = self.result("search_help_center")
        return found if isinstance(found, list) else []

    def article_lines(self, limit: int = 2) -> str:
        lines = [f"- {a['title']}: {a['url']}" for a in self.articles()[:limit]]
        return "These articles cover it step by step:\n" + "\n".join(lines) if lines else ""

    def second_round(self) -> list[dict[str, Any]]:
        category = self.category
        cid = self.customer.get("id")
        if _INJECTION.search(self.text):
            return [
                self.handoff("The ticket tries to give the agent instructions (possible prompt injection).")
            ]
        if category == "refund_request" and cid:
            return self.propose_refund()
        if category == "account_deletion" and cid:
            return [
                self.say("The requester's email matches the account owner. Deletion is irreversible."),
                self.use("delete_account", reason="Account owner asked for deletion by email."),
            ]
        if self.triage.get("route") == "escalate":
            why = _WHY.get(category, f"The policy guard sends {category.replace('_', ' ')} tickets to people")
            return [self.handoff(f"{why}.")]
        if not cid and category in {"password_reset", "profile_update"}:
            return [
                self.handoff(
                    "No customer record matches the requester's e-mail, so no account can be changed."
                )
            ]
        if category == "password_reset":
            return [self.use("send_password_reset")]
        if category == "profile_update":
            change = self.profile_change()
            if change:
                return [self.use("update_profile", **change)]
        return [self.reply(self.answer(category))]

    def handoff(self, reason: str) -> dict[str, Any]:
        facts = []
        if self.customer:
            c = self.customer
            facts.append(f"Customer {c.get('name')} ({c.get('plan')}), id {c.get('id')}.")
        else:
            facts.append("No CRM record matches the requester's email.")
        facts.extend(f"Relevant article: {a['title']}" for a in self.articles()[:2])
        draft = self.letter(
            "Thank you for your message. I have passed it to a colleague who will get back to you personally, "
            "usually within one business day."
        )
        return self.use("hand_off_to_human", reason=reason, summary=" ".join(facts), draft_reply=draft)

    def propose_refund(self) -> list[dict[str, Any]]:
        invoices = self.result("list_invoices") or []
        if not isinstance(invoices, list) or not invoices:
            return [self.handoff("Refund requested but no invoice was found.")]
        incident = next((a for a in self.articles() if _INCIDENT.search(f"{a['id']} {a['title']}")), None)
        if incident and "read_help_article" not in self.calls:
            # Grounds come from what the company documents, so read the article before proposing.
            return [self.use("read_help_article", article_id=incident["id"])]
        month = next((n for word, n in _MONTHS.items() if re.search(rf"\b{word}\b", self.text, re.I)), None)
        invoice = next((i for i in invoices if month and int(i["period"][5:7]) == month), invoices[0])
        amount = int(invoice["amount_cents"]) - int(invoice.get("refunded_cents", 0))
        ground = self.documented_incident(invoice["period"]) if _OUTAGE.search(self.text) else None
        if ground:
            clause = _CLAUSE.search(ground)
            basis = clause.group(0) if clause else "the service level agreement"
            note = (
                f"Documented incident in the period of invoice {invoice['id']}: {ground} "
                f"Refund appears justified per {basis}."
            )
            reason = (
                f"Incident in {invoice['period']} documented in the help center; {basis} covers a refund."
            )
        else:
            # Without a documented ground the proposal is a goodwill half, and the note says exactly that:
            # the approval people see ("Partial refund of …") is the amount proposed here.
            amount = max(1, amount // 2)
            note = (
                f"No incident or policy ground found for invoice {invoice['id']} ({invoice['period']}); the customer "
                f"asks for a refund anyway. A person should decide; I would not refund in full and propose "
                f"{money(amount)} (half) as goodwill at most."
            )
            reason = f"Customer requests a refund of {invoice['id']}; no SLA or policy ground found, so half as goodwill."
        return [
            self.say(note),
            self.use(
                "issue_refund",
                invoice_id=invoice["id"],
                amount_cents=amount,
                reason=reason[:500],
            ),
        ]

    def documented_incident(self, period: str) -> str | None:
        """The line of the article read that records an incident in `period` (YYYY-MM), markup removed."""
        article = self.result("read_help_article")
        text = article.get("text", "") if isinstance(article, dict) else ""
        for line in text.splitlines():
            if period in line:
                return re.sub(r"[*_`#]+|^\s*-\s*", "", line).strip()[:300]
        return None

    def profile_change(self) -> dict[str, Any]:
        name = re.search(
            r"name\s+(?:to|should\s+be|is)\s+([A-ZÀ-Ý][\w'-]+(?:\s+[A-ZÀ-Ý][\w'-]+)*)", self.text
        )
        if name:
            return {"name": name.group(1)}
        notifications = {}
        for channel, words in {
            "sms": r"sms|text\s+messages?",
            "email": r"e-?mails?",
            "digest": r"digest",
        }.items():
            if re.search(
                rf"(turn|switch)\s+off\s+(the\s+)?({words})|stop\s+(the\s+)?({words})|no\s+more\s+({words})|unsubscribe",
                self.text,
                re.I,
            ):
                notifications[channel] = False
            elif re.search(
                rf"(turn|switch)\s+on\s+(the\s+)?({words})|enable\s+(the\s+)?({words})", self.text, re.I
            ):
                notifications[channel] = True
        return {"notifications": notifications} if notifications else {}

    def answer(self, category: str) -> str:
        if category in {"order_status", "shipping", "order_change"}:
            orders = self.result("list_orders") or []
            if isinstance(orders, list) and orders:
                order = next((o for o in orders if o["id"] in self.text), orders[0])
                status = {
                    "shipped": f"shipped on {order.get('shipped_at')} with {order.get('carrier')} (tracking "
                    f"{order.get('tracking')}) and should arrive by {order.get('eta')}",
                    "processing": f"is being prepared at our warehouse and is expected to ship so that it arrives "
                    f"around {order.get('eta')}; you will get the tracking number by email when it ships",
                    "delivered": f"was delivered by {order.get('carrier')} (tracking {order.get('tracking')})",
                }.get(order["status"], f"has the status {order['status']}")
                items = ", ".join(f"{i['qty']}× {i['name']}" for i in order["items"])
                return self.letter(f"Your order {order['id']} ({items}) {status}.", self.article_lines(1))
        if category in {"invoice_request", "billing_question", "refund_status"}:
            invoices = self.result("list_invoices") or []
            if isinstance(invoices, list) and invoices:
                lines = "\n".join(
                    f"- {i['id']}: {i['description']}, {money(i['amount_cents'])}, {i['status']}"
                    + (f" ({money(i['refunded_cents'])} refunded)" if i.get("refunded_cents") else "")
                    for i in invoices[:3]
                )
                return self.letter(
                    "Here are your most recent invoices; each can be downloaded as a PDF receipt in "
                    f"Billing → Invoices:\n{lines}",
                    self.article_lines(1),
                )
        top = self.articles()[:1]
        if top:
            return self.letter(
                f"Thanks for reaching out. From our help center — {top[0]['title']}: {top[0]['snippet']}",
                self.article_lines(2),
                "If this does not solve it, reply to this email and we will dig in further.",
            )
        return self.letter("Thanks for reaching out. Could you tell us a little more so we can help?")

    def reply(self, body: str, status: str = "solved") -> dict[str, Any]:
        sources = ", ".join(a["id"] for a in self.articles()[:2]) or "none"
        note = f"Offline agent answered as {self.category}; articles used: {sources}."
        return self.use("reply_to_customer", body=body, status=status, internal_note=note)

    def after_action(self, tool: str) -> list[dict[str, Any]]:
        args, result = self.calls[tool][-1]
        if isinstance(result, dict) and result.get("decision") == "deny":
            return [self.after_denial(result)]
        if isinstance(result, dict) and "error" in result:
            return [self.handoff(f"{tool} failed: {result['error']}")]
        if tool == "send_password_reset":
            body = self.letter(
                "I have sent a password-reset link to the email address on your account. It is valid for 60 "
                "minutes and works once; check your spam folder if you do not see it.",
                self.article_lines(1),
            )
        elif tool == "update_profile":
            changed = ", ".join(f"{k}" for k in args if k != "customer_id")
            body = self.letter(f"Done: I have updated your {changed} as you asked. The change is live now.")
        elif tool == "issue_refund":
            body = self.letter(
                f"Good news: we have refunded {money(int(result['amount_cents']))} for invoice "
                f"{result['invoice_id']}. It reaches your card in 5 to 10 business days."
            )
        else:
            body = self.letter(
                "Your account is scheduled for deletion. Everything is removed after a 14-day grace period; "
                "reply within that time if you change your mind."
            )
        return [self.reply(body)]

    def after_denial(self, decision: dict[str, Any]) -> dict[str, Any]:
        reason = str(decision.get("reason") or "it does not meet our policy").rstrip(".")
        return self.reply(
            self.letter(
                f"Thank you for your patience. We have reviewed your request and cannot approve it: {reason}.",
                self.article_lines(1),
            ),
            status="solved",
        )
