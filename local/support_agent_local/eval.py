"""`support-agent eval`: labelled tickets through the whole system on the embedded runtime, scored.

Each ticket takes the demo's path (signed webhook → Intake → AgentStep → approval state machine → Notifier →
Slack stand-in → SlackInteraction), with any model provider and scripted human decisions. What is scored is
read back from the stack: the session's outcome, the audit trail (model usage, tool calls, approvals, policy
refusals), the approvals table and the billing ledger. Rendering (table, JSON, HTML) is in `eval_report`.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from support_agent.models import Approval, Decision
from support_agent.money import decimals
from support_agent.rules.audit import AuditEntry

PRICES = Path(__file__).resolve().parent / "data" / "prices.yaml"
Route = Literal["auto", "escalate"]


class EvalInputError(ValueError):
    """A ticket file, decision rule or price table that cannot be used; the message says where and why."""


# --- labelled tickets -----------------------------------------------------------------------------------


class LabelledTicket(BaseModel):
    """One row of an eval file."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=64)
    subject: str = Field(min_length=1, max_length=500)
    body: str = Field(min_length=1, max_length=20000)
    requester: str = Field(min_length=3, max_length=254)
    customer_id: str | None = None
    expected_route: Route
    expected_category: str | None = None
    # None: not checked; []: the ticket must end with no action executed.
    expected_actions: list[str] | None = None
    decision: dict[str, Any] | None = None  # this ticket's own scripted decision (demo format)

    @field_validator("expected_actions", mode="before")
    @classmethod
    def _actions(cls, value: Any) -> Any:
        if isinstance(value, str):  # CSV: `issue_refund;delete_account`, `none` or `-` for no action
            text = value.strip()
            if not text:
                return None
            return (
                [] if text.lower() in {"-", "none"} else [a.strip() for a in re.split(r"[;,\s]+", text) if a]
            )
        return value

    @field_validator("expected_category", "customer_id", mode="before")
    @classmethod
    def _blank(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    def as_demo_ticket(self) -> dict[str, Any]:
        """The ticket as the demo driver takes it; the ticket id is the name (replay files are keyed by it)."""
        row: dict[str, Any] = {
            "name": self.name,
            "id": self.name,
            "subject": self.subject,
            "body": self.body,
            "requester_email": self.requester,
        }
        if self.customer_id:
            row["customer_id"] = self.customer_id
        return row


def load_labelled(path: Path) -> list[LabelledTicket]:
    """CSV (header row) or JSON lines; `requester_email` is accepted for `requester`."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalInputError(f"{path}: cannot read ({exc})") from None
    rows: list[dict[str, Any]] = []
    if path.suffix.lower() == ".csv":
        rows = [dict(r) for r in csv.DictReader(text.splitlines())]
    else:
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalInputError(f"{path} line {number}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise EvalInputError(f"{path} line {number}: expected a JSON object")
            rows.append(row)
    tickets, seen = [], set()
    for number, row in enumerate(rows, 1):
        row = {k: v for k, v in row.items() if k is not None}
        row.setdefault("requester", row.get("requester_email"))
        row.setdefault("name", f"ticket-{number}")
        try:
            ticket = LabelledTicket.model_validate(row)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise EvalInputError(f"{path} ticket {number}: {problems}") from None
        if ticket.name in seen:
            raise EvalInputError(f"{path} ticket {number}: the name {ticket.name!r} is used twice")
        seen.add(ticket.name)
        tickets.append(ticket)
    if not tickets:
        raise EvalInputError(f"{path}: no tickets")
    return tickets


# --- scripted decisions ---------------------------------------------------------------------------------

_DECIDE = re.compile(r"^(approve|deny|reply|partial:(\d{1,3})%|partial:(\d{1,9}))$")


def check_decide(spec: str) -> str:
    """A decision spec: approve, deny, reply, partial:N% (of the proposed value) or partial:N (minor units)."""
    match = _DECIDE.match(spec.strip())
    if not match or (match.group(2) is not None and not 0 < int(match.group(2)) <= 100):
        raise EvalInputError(
            f"decision {spec!r}: use approve, deny, reply, partial:N% (1-100) or partial:N (minor units)"
        )
    return spec.strip()


class DecisionRule(BaseModel):
    """The first rule whose conditions all hold decides; a condition left out holds for every request."""

    model_config = ConfigDict(extra="forbid")

    tool: str | None = None
    ticket: str | None = None
    category: str | None = None
    above: int | None = Field(default=None, ge=0, description="the proposed value is above this")
    decide: str
    reason: str = "declined in the evaluation run"

    @field_validator("decide")
    @classmethod
    def _decide(cls, value: str) -> str:
        return check_decide(value)

    def matches(self, approval: Approval, ticket: str) -> bool:
        proposed = _proposed(approval)
        return (
            (self.tool is None or self.tool == approval.tool)
            and (self.ticket is None or self.ticket == ticket)
            and (self.category is None or self.category == approval.escalation.category)
            and (self.above is None or (proposed is not None and proposed > self.above))
        )


class DecisionRules(BaseModel):
    """`--decisions`: one decision for every request, or rules from a YAML file."""

    model_config = ConfigDict(extra="forbid")

    default: str = "approve"
    rules: list[DecisionRule] = []
    use_ticket_decisions: bool = True  # a ticket's own `decision` field wins

    @field_validator("default")
    @classmethod
    def _default(cls, value: str) -> str:
        return check_decide(value)

    @classmethod
    def parse(cls, arg: str) -> DecisionRules:
        """`approve`, `deny`, `reply`, `partial:50%`, `partial:2500`, or a YAML file of rules."""
        if arg.endswith((".yaml", ".yml")):
            try:
                data = yaml.safe_load(Path(arg).read_text(encoding="utf-8")) or {}
                return cls.model_validate(data)
            except (OSError, yaml.YAMLError) as exc:
                raise EvalInputError(f"{arg}: cannot read the decision rules ({exc})") from None
            except ValidationError as exc:
                problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                raise EvalInputError(f"{arg}: {problems}") from None
        return cls(default=check_decide(arg))

    def pick(self, approval: Approval, ticket: LabelledTicket) -> dict[str, Any]:
        """The decision for this request, in the demo's shape ({"action", "value"})."""
        if self.use_ticket_decisions and ticket.decision:
            return dict(ticket.decision)
        rule = next((r for r in self.rules if r.matches(approval, ticket.name)), None)
        spec, reason = (
            (rule.decide, rule.reason) if rule else (self.default, "declined in the evaluation run")
        )
        return decision_for(spec, approval, reason)


def _proposed(approval: Approval) -> int | None:
    return approval.partial.maximum if approval.partial else None


def decision_for(
    spec: str, approval: Approval, reason: str = "declined in the evaluation run"
) -> dict[str, Any]:
    """A decision spec applied to one request; a partial one on a request without a partial offer approves."""
    if spec == "deny":
        return {"action": "deny", "value": reason}
    if spec == "reply":
        return {"action": "reply_manually", "value": "Thank you, a colleague has looked at your request."}
    bound = approval.partial
    if not spec.startswith("partial:") or bound is None:
        return {"action": "approve"}
    number = spec.split(":", 1)[1]
    amount = bound.maximum * int(number[:-1]) // 100 if number.endswith("%") else int(number)
    amount = max(1, min(amount, bound.maximum))
    places = decimals(bound.currency) if bound.currency else 0
    value = f"{amount / 10**places:.{places}f}" if places else str(amount)
    return {"action": "partial", "value": value}


# --- prices ---------------------------------------------------------------------------------------------


class Price(BaseModel):
    """US dollars per million tokens."""

    model_config = ConfigDict(extra="forbid")

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_write: float = Field(ge=0)
    cache_read: float = Field(ge=0)


class PriceTable(BaseModel):
    """The dated price table (data/prices.yaml): model id → price, matched by the longest id contained."""

    model_config = ConfigDict(extra="forbid")

    as_of: date
    source: str
    note: str = ""
    models: dict[str, Price]

    @classmethod
    def load(cls, path: Path = PRICES) -> PriceTable:
        try:
            return cls.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
        except (OSError, yaml.YAMLError, ValidationError) as exc:
            raise EvalInputError(f"{path}: not a price table ({exc})") from None

    def find(self, model: str) -> tuple[str, Price] | None:
        """`claude-sonnet-4-5-20250929` and `us.anthropic.claude-sonnet-4-5-…-v1:0` both find
        `claude-sonnet-4-5`; the longest key contained in the id wins."""
        found = [(k, p) for k, p in self.models.items() if k.lower() in model.lower()]
        return max(found, key=lambda kp: len(kp[0])) if found else None

    def cost(self, model: str, usage: Usage) -> float | None:
        """US dollars for `usage` on `model`; None when the table has no price for it."""
        found = self.find(model)
        if found is None:
            return None
        p = found[1]
        return (
            usage.input * p.input
            + usage.output * p.output
            + usage.cache_write * p.cache_write
            + usage.cache_read * p.cache_read
        ) / 1_000_000


@dataclass
class Usage:
    """Tokens as the Messages API reports them (input excludes what was read from or written to the cache)."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0

    def add(self, other: Usage) -> Usage:
        return Usage(
            self.input + other.input,
            self.output + other.output,
            self.cache_read + other.cache_read,
            self.cache_write + other.cache_write,
        )

    @property
    def prompt(self) -> int:
        """Every input token of the prompt: uncached, read from the cache, written to it."""
        return self.input + self.cache_read + self.cache_write


# --- reading the trail ----------------------------------------------------------------------------------

ViolationKind = Literal["unapproved_action", "policy_refusal", "reply_on_escalated", "unaudited_side_effect"]


@dataclass
class Violation:
    kind: ViolationKind
    detail: str


def usage_by_model(entries: list[AuditEntry]) -> dict[str, Usage]:
    """Tokens of every model call in the trail, by the model id the API answered with."""
    out: dict[str, Usage] = {}
    for e in entries:
        if e.action != "model:invoke" or "input_tokens" not in e.details:
            continue
        model = e.resource.removeprefix("model/")
        d = e.details
        used = Usage(
            int(d.get("input_tokens", 0)),
            int(d.get("output_tokens", 0)),
            int(d.get("cache_read_input_tokens", 0)),
            int(d.get("cache_creation_input_tokens", 0)),
        )
        out[model] = out.get(model, Usage()).add(used)
    return out


def violations(
    entries: list[AuditEntry], decided: Callable[[str], Decision | None], guard_escalated: bool
) -> list[Violation]:
    """What the trail shows against the rules: an approval-gated action executed without a person's recorded
    approve or partial decision (checked in the approvals table too), any call refused by the policy or
    its checks, and a reply sent to a ticket the guard escalated before any person decided."""
    found: list[Violation] = []
    approved: list[str] = []  # tools a person approved, not yet used
    person_decided = False
    escalated = guard_escalated
    for e in entries:
        tool = str(e.details.get("tool", ""))
        if e.action == "triage:classify" and e.decision == "escalate":
            escalated = True
        elif e.action == "approval:resume":
            person_decided = True
            approval_id = e.resource.removeprefix("approvals/")
            stored = decided(approval_id)
            if e.decision in {"approve", "partial"} and stored is not None and stored.kind == e.decision:
                approved.append(tool)
        elif e.outcome == "executed" and e.decision.startswith("requires_approval"):
            if tool in approved:
                approved.remove(tool)
            else:
                found.append(
                    Violation("unapproved_action", f"{tool or e.action} on {e.resource} (seq {e.seq})")
                )
        elif e.outcome.startswith("refused"):
            found.append(Violation("policy_refusal", f"{tool or e.action} on {e.resource}: {e.outcome}"))
        elif e.action == "tickets:respond" and e.outcome != "draft_sent" and escalated and not person_decided:
            found.append(Violation("reply_on_escalated", f"reply on {e.resource} (seq {e.seq})"))
    return found


def executed(entries: list[AuditEntry], tool: str) -> int:
    """How many times the trail records `tool` as executed."""
    return sum(1 for e in entries if e.outcome == "executed" and e.details.get("tool") == tool)


# --- metrics --------------------------------------------------------------------------------------------


def pass_hat_k(n: int, c: int, k: int) -> float:
    """τ-bench's pass^k for one task: the chance that k trials drawn from n (c of them successes) all
    succeed, C(c, k) / C(n, k)."""
    if not 0 < k <= n:
        raise ValueError(f"pass^k needs 0 < k <= n (k={k}, n={n})")
    return math.comb(c, k) / math.comb(n, k)


def ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def recall_precision(
    pairs: Sequence[tuple[str, str | None, str, str, str]],
) -> dict[str, dict[str, Any]]:
    """Escalation recall and precision per category from (expected category, got category, expected route,
    got route, ticket) tuples: recall over tickets expected to escalate, by their expected category;
    precision over tickets that escalated, by the category the run gave them; `all` for every category."""
    out: dict[str, dict[str, Any]] = {}

    def bucket(name: str) -> dict[str, Any]:
        return out.setdefault(name, {"expected": 0, "caught": 0, "escalated": 0, "correct": 0})

    for expected_cat, got_cat, expected, got, _name in pairs:
        for name in {"all", expected_cat} if expected == "escalate" else set():
            b = bucket(name)
            b["expected"] += 1
            b["caught"] += got == "escalate"
        for name in {"all", got_cat or "unknown"} if got == "escalate" else set():
            b = bucket(name)
            b["escalated"] += 1
            b["correct"] += expected == "escalate"
    for b in out.values():
        b["recall"] = ratio(b["caught"], b["expected"])
        b["precision"] = ratio(b["correct"], b["escalated"])
    return dict(sorted(out.items(), key=lambda kv: (kv[0] != "all", kv[0])))


# --- one run of one ticket -------------------------------------------------------------------------------


@dataclass
class TicketRun:
    """What one ticket did in one run."""

    name: str
    run: int
    route: str  # auto (answered with no person), escalate (a person decided or has it), lost (neither)
    state: str
    category: str
    reason: str
    actions: list[dict[str, Any]]
    decisions: list[str]
    reply: str
    slack: list[str]
    usage: Usage
    models: list[str]
    cost: float | None
    seconds: dict[str, float]
    violations: list[Violation]
    passed: bool = False
    misses: list[str] = field(default_factory=list)

    @property
    def signature(self) -> str:
        """The outcome compared across runs: route, final state and the actions executed."""
        return f"{self.route}|{self.state}|{','.join(sorted(a['tool'] for a in self.actions))}"


def score(ticket: LabelledTicket, run: TicketRun) -> TicketRun:
    """Mark the run passed when its route, category (when labelled) and actions (when labelled) agree."""
    misses = []
    if run.route != ticket.expected_route:
        misses.append(f"route {run.route}, expected {ticket.expected_route}")
    if ticket.expected_category is not None and run.category != ticket.expected_category:
        misses.append(f"category {run.category}, expected {ticket.expected_category}")
    done = sorted(a["tool"] for a in run.actions)
    if ticket.expected_actions is not None and done != sorted(ticket.expected_actions):
        misses.append(f"actions {done or 'none'}, expected {sorted(ticket.expected_actions) or 'none'}")
    if any(v.kind == "unapproved_action" for v in run.violations):
        misses.append("action executed without approval")
    run.misses, run.passed = misses, not misses
    return run


# --- running ---------------------------------------------------------------------------------------------


@dataclass
class ModelMeter:
    """Wraps the model provider the functions build: time in model calls, and optional recording of every
    response to a replay folder (`<ticket id>.jsonl`, one response per model turn)."""

    record: Path | None = None
    seconds: float = 0.0
    recorded: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def wrap(self, inner: Any) -> Any:
        meter = self

        class Metered:
            name = inner.name

            def create(self, request: Any) -> Any:
                started = time.perf_counter()
                try:
                    return meter.keep(request, inner.create(request))
                finally:
                    meter.seconds += time.perf_counter() - started

        return Metered()

    def keep(self, request: Any, response: Any) -> Any:
        if self.record is None:
            return response
        from support_agent.agent.conversation import model_turns, ticket_data
        from support_agent.agent.llm import as_message, replay_file_name

        ticket = str(ticket_data(request.messages).get("ticket", {}).get("id", ""))
        turn = model_turns(request.messages)
        lines = self.recorded.setdefault(ticket, [])
        if ticket and turn == len(lines):  # the first run's conversation; later runs are not recorded
            digest = hashlib.sha256(f"{ticket}:{turn}".encode()).hexdigest()[:24]
            lines.append(as_message(response, f"msg_replay_{digest}"))
            self.record.mkdir(parents=True, exist_ok=True)
            text = "".join(json.dumps(m, ensure_ascii=False, sort_keys=True) + "\n" for m in lines)
            (self.record / replay_file_name(ticket)).write_text(text, encoding="utf-8")
        return response


def provider_parameters(provider: str, model: str | None) -> dict[str, str]:
    """Template parameters for the provider choice (the functions build the provider from them)."""
    if provider.startswith("replay:"):
        folder = Path(provider.split(":", 1)[1]).resolve()
        if not folder.exists():
            raise EvalInputError(f"{provider}: no such replay folder or file")
        return {"ModelProvider": f"replay:{folder}"}
    if provider not in {"offline", "anthropic", "bedrock"}:
        raise EvalInputError(f"provider {provider!r}: use offline, anthropic, bedrock or replay:DIR")
    if provider == "anthropic" and not os.environ.get("ANTHROPIC_API_KEY"):
        raise EvalInputError("provider anthropic needs ANTHROPIC_API_KEY in the environment")
    params = {"ModelProvider": provider}
    if model:
        params["BedrockModelId" if provider == "bedrock" else "ModelId"] = model
    return params


def _bedrock_credentials() -> dict[str, Any]:
    """The caller's AWS credentials, read before the emulation replaces them with moto's fakes."""
    import boto3

    session = boto3.Session()
    found = session.get_credentials()
    if found is None:
        raise EvalInputError("provider bedrock needs AWS credentials (a profile or the AWS_* variables)")
    frozen = found.get_frozen_credentials()
    return {
        "aws_access_key": frozen.access_key,
        "aws_secret_key": frozen.secret_key,
        "aws_session_token": frozen.token,
        "aws_region": session.region_name or "us-east-1",
    }


@contextlib.contextmanager
def metered(meter: ModelMeter, bedrock: dict[str, Any] | None) -> Iterator[None]:
    """The functions' provider builder wrapped by the meter for the duration of the run."""
    from support_agent import composition

    original = composition.provider

    def build(s: Any) -> Any:
        if bedrock is not None and s.model_provider == "bedrock":
            # Bedrock is reached with the caller's own credentials (the emulation's are moto's fakes).
            import anthropic
            from support_agent.agent.llm import AnthropicProvider

            client = anthropic.AnthropicBedrock(timeout=s.model_timeout_seconds, max_retries=3, **bedrock)
            return meter.wrap(AnthropicProvider(client, s.bedrock_model_id, "bedrock"))
        return meter.wrap(original(s))

    composition.provider = build  # type: ignore[assignment]
    try:
        yield
    finally:
        composition.provider = original  # type: ignore[assignment]


@dataclass
class EvalOptions:
    provider: str = "offline"
    model: str | None = None
    decisions: DecisionRules = field(default_factory=DecisionRules)
    runs: int = 1
    record: Path | None = None
    prices: Path = PRICES


Progress = Callable[[int, int, str], None]


def run_eval(
    tickets: list[LabelledTicket], options: EvalOptions, progress: Progress | None = None
) -> list[list[TicketRun]]:
    """Every ticket, `options.runs` times, each run on a fresh stack; results per run, in ticket order."""
    from support_agent_local.demo import drive
    from support_agent_local.emulator import EmbeddedAws, metrics_off
    from support_agent_local.runtime import Poller

    params = {"LogLevel": "WARNING", **provider_parameters(options.provider, options.model)}
    bedrock = _bedrock_credentials() if options.provider == "bedrock" else None
    prices = PriceTable.load(options.prices)
    meter = ModelMeter(options.record)
    results: list[list[TicketRun]] = []
    total, done = len(tickets) * options.runs, 0
    with metrics_off(), metered(meter, bedrock):
        for run_index in range(options.runs):
            this_run: list[TicketRun] = []
            with EmbeddedAws(parameters=params) as stack:
                poller = Poller(stack)
                from support_agent.agent.triage import Triage
                from support_agent.rules.policy import cached_policy

                with stack.environment_of("AgentStepFunction") as env:
                    guard = Triage(cached_policy(env.get("POLICY_FILE") or _default_policy()))
                for number, ticket in enumerate(tickets, 1):
                    if progress:
                        progress(done, total, ticket.name)
                    busy_before, model_before = dict(poller.busy), meter.seconds
                    driven = drive(
                        stack,
                        poller,
                        None,
                        number,
                        ticket.as_demo_ticket(),
                        functools.partial(_pick, options.decisions, ticket=ticket),
                    )
                    busy = {k: v - busy_before.get(k, 0.0) for k, v in poller.busy.items()}
                    model_s = meter.seconds - model_before
                    seconds = {
                        "intake": driven.intake_seconds,
                        "agent": max(0.0, busy.get("agent_step", 0.0) - model_s),
                        "model": model_s,
                        "approval_path": busy.get("notifier", 0.0) + busy.get("slack_interaction", 0.0),
                    }
                    entries = stack.audit().entries(driven.session_id) if driven.session_id else []
                    guard_result = guard.decide(f"{ticket.subject}\n{ticket.body}")
                    run = _ticket_run(
                        stack, ticket, run_index, driven, entries, seconds, prices, guard_result
                    )
                    this_run.append(score(ticket, run))
                    done += 1
                _check_ledger(stack, this_run)
            results.append(this_run)
    if progress:
        progress(total, total, "")
    return results


def _pick(rules: DecisionRules, approval: Approval, ticket: LabelledTicket) -> dict[str, Any]:
    return rules.pick(approval, ticket)


def _default_policy() -> str:
    from support_agent.config import default_policy_file

    return default_policy_file()


def _ticket_run(
    stack: Any,
    ticket: LabelledTicket,
    run_index: int,
    driven: Any,
    entries: list[AuditEntry],
    seconds: dict[str, float],
    prices: PriceTable,
    guard: Any,
) -> TicketRun:
    from support_agent_local.demo import describe_decision

    session = driven.session
    state = session.state.value if session else "not_created"
    if state == "responded" and not driven.decisions:
        route = "auto"
    elif driven.decisions or state in {"handoff", "closed", "awaiting_approval", "responded"}:
        route = "escalate"
    else:
        route = "lost"
    classified = [e.outcome for e in entries if e.action == "triage:classify"]
    category = classified[-1] if classified else guard.category

    def decided(approval_id: str) -> Decision | None:
        stored = stack.approvals().get(approval_id)
        return stored.decision if isinstance(stored, Approval) else None

    by_model = usage_by_model(entries)
    usage = Usage()
    cost: float | None = 0.0
    for model, used in by_model.items():
        usage = usage.add(used)
        priced = prices.cost(model, used)
        cost = None if cost is None or priced is None else cost + priced
    return TicketRun(
        name=ticket.name,
        run=run_index,
        route=route,
        state=state,
        category=category,
        reason=(session.reason or "") if session else "no session",
        actions=list(session.actions) if session else [],
        decisions=[describe_decision(a, p) for a, p in driven.decisions],
        reply=session.replies[-1] if session and session.replies else "",
        slack=driven.slack,
        usage=usage,
        models=sorted(by_model),
        cost=cost,
        seconds=seconds,
        violations=violations(entries, decided, guard.route == "escalate"),
    )


def _check_ledger(stack: Any, runs: list[TicketRun]) -> None:
    """Every refund in the billing ledger has an executed, audited refund behind it."""
    from support_agent.adapters.embedded import EmbeddedBilling

    made = len(EmbeddedBilling(stack.ref("EmbeddedDataTable")).refunds())
    audited = sum(1 for r in runs for a in r.actions if a["tool"] == "issue_refund")
    if made > audited and runs:
        runs[-1].violations.append(
            Violation("unaudited_side_effect", f"{made} refunds in the ledger, {audited} in the sessions")
        )


# --- the report ------------------------------------------------------------------------------------------


def summarize(
    tickets: list[LabelledTicket], results: list[list[TicketRun]], prices: PriceTable
) -> dict[str, Any]:
    """Every figure the report shows, from all runs (rates over ticket-runs; pass^k per ticket)."""
    flat = [r for run in results for r in run]
    by_name = {t.name: t for t in tickets}
    n = len(flat)
    expected_auto = [r for r in flat if by_name[r.name].expected_route == "auto"]
    pairs = [
        (
            by_name[r.name].expected_category or "uncategorised",
            r.category,
            by_name[r.name].expected_route,
            r.route,
            r.name,
        )
        for r in flat
        if r.route in {"auto", "escalate"}
    ]
    lost = [r for r in flat if r.route == "lost"]
    pairs += [
        (
            by_name[r.name].expected_category or "uncategorised",
            r.category,
            by_name[r.name].expected_route,
            "auto",
            r.name,
        )
        for r in lost
    ]
    kinds: dict[str, int] = {}
    for r in flat:
        for v in r.violations:
            kinds[v.kind] = kinds.get(v.kind, 0) + 1
    usage = Usage()
    for r in flat:
        usage = usage.add(r.usage)
    costs = [r.cost for r in flat]
    priced = [c for c in costs if c is not None]
    k = len(results)
    per_ticket: list[dict[str, Any]] = []
    for t in tickets:
        runs = [run[i] for run in results for i, r in enumerate(run) if r.name == t.name]
        passed = sum(r.passed for r in runs)
        per_ticket.append(
            {
                "name": t.name,
                "passed": passed,
                "runs": len(runs),
                "pass_hat_k": pass_hat_k(len(runs), passed, len(runs)),
                "consistent": len({r.signature for r in runs}) == 1,
            }
        )
    stages = {s: [r.seconds.get(s, 0.0) for r in flat] for s in ("intake", "agent", "model", "approval_path")}
    return {
        "tickets": len(tickets),
        "runs": k,
        "ticket_runs": n,
        "passed": sum(r.passed for r in flat),
        "resolution_rate": ratio(sum(r.route == "auto" and r.state == "responded" for r in flat), n),
        "over_escalation_rate": ratio(sum(r.route == "escalate" for r in expected_auto), len(expected_auto)),
        "unfinished": len(lost),
        "escalation": recall_precision(pairs),
        "route_confusion": _confusion([(by_name[r.name].expected_route, r.route) for r in flat]),
        "category_confusion": _confusion(
            [
                (by_name[r.name].expected_category, r.category)
                for r in flat
                if by_name[r.name].expected_category
            ]
        ),
        "violations": {
            "unapproved_action": kinds.get("unapproved_action", 0),
            "policy_refusal": kinds.get("policy_refusal", 0),
            "reply_on_escalated": kinds.get("reply_on_escalated", 0),
            "unaudited_side_effect": kinds.get("unaudited_side_effect", 0),
        },
        "tokens": asdict(usage),
        "cache_share": ratio(usage.cache_read, usage.prompt),
        "cost": {
            "total": sum(priced) if priced else None,
            "per_ticket": sum(priced) / len(priced) if priced else None,
            "unpriced_runs": len(costs) - len(priced),
            "currency": "USD",
            "prices_as_of": prices.as_of.isoformat(),
            "prices_source": prices.source,
        },
        "seconds": {
            s: {"total": sum(v), "mean": sum(v) / len(v) if v else 0.0, "p95": _percentile(v, 0.95)}
            for s, v in stages.items()
        },
        "pass_hat_k": {
            "k": k,
            "mean": sum(p["pass_hat_k"] for p in per_ticket) / len(per_ticket),
            "consistent": sum(bool(p["consistent"]) for p in per_ticket),
            "per_ticket": per_ticket,
        },
    }


def _confusion(pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
    labels = sorted({str(p) for pair in pairs for p in pair})
    counts: dict[str, dict[str, int]] = {e: dict.fromkeys(labels, 0) for e in labels}
    for expected, got in pairs:
        counts[str(expected)][str(got)] += 1
    return {"labels": labels, "counts": counts}


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def report(
    source: str, options: EvalOptions, tickets: list[LabelledTicket], results: list[list[TicketRun]]
) -> dict[str, Any]:
    """The JSON result: settings, the summary, and every ticket's runs with its text."""
    prices = PriceTable.load(options.prices)
    return {
        "format": "support-agent-eval/1",
        "file": source,
        "provider": options.provider,
        "model": options.model,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "summary": summarize(tickets, results, prices),
        "tickets": [
            {
                **t.model_dump(exclude={"decision"}),
                "runs": [
                    {**asdict(run), "signature": run.signature}
                    for per_run in results
                    for run in per_run
                    if run.name == t.name
                ],
            }
            for t in tickets
        ],
    }


# --- baseline --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gate:
    """How much worse than the baseline a run may be before `--baseline` fails it."""

    max_recall_drop: float = 0.02
    max_resolution_drop: float = 0.05
    max_cost_rise: float = 0.10  # relative: 0.10 is 10 % more per ticket
    max_new_violations: int = 0


def regressions(baseline: dict[str, Any], current: dict[str, Any], gate: Gate) -> list[str]:
    """Each way `current` is worse than `baseline` past the gate, in words (empty: no regression)."""
    old, new = baseline["summary"], current["summary"]
    found = []
    old_recall = (old["escalation"].get("all") or {}).get("recall")
    new_recall = (new["escalation"].get("all") or {}).get("recall")
    if old_recall is not None and (
        new_recall is None or old_recall - new_recall > gate.max_recall_drop + 1e-9
    ):
        found.append(
            f"escalation recall {_pct(new_recall)} < baseline {_pct(old_recall)} (allowed drop {gate.max_recall_drop:.0%})"
        )
    for category, b in old["escalation"].items():
        now = new["escalation"].get(category, {}).get("recall")
        known = category != "all" and b.get("recall") is not None and now is not None
        if known and b["recall"] - now > gate.max_recall_drop + 1e-9:
            found.append(f"escalation recall of {category} {_pct(now)} < baseline {_pct(b['recall'])}")
    old_res, new_res = old.get("resolution_rate"), new.get("resolution_rate")
    if old_res is not None and new_res is not None and old_res - new_res > gate.max_resolution_drop + 1e-9:
        found.append(
            f"resolution rate {_pct(new_res)} < baseline {_pct(old_res)} (allowed drop {gate.max_resolution_drop:.0%})"
        )
    old_v, new_v = sum(old["violations"].values()), sum(new["violations"].values())
    if new_v - old_v > gate.max_new_violations or new["violations"].get("unapproved_action", 0):
        found.append(f"policy violations {new_v} (baseline {old_v})")
    old_cost, new_cost = old["cost"].get("per_ticket"), new["cost"].get("per_ticket")
    if (
        old_cost is not None
        and new_cost is not None
        and new_cost > old_cost * (1 + gate.max_cost_rise) + 1e-12
    ):
        found.append(
            f"cost per ticket ${new_cost:.4f} > baseline ${old_cost:.4f} (allowed rise {gate.max_cost_rise:.0%})"
        )
    return found


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"
