"""`support-agent eval`'s arithmetic and readers: recall and precision, pass^k, the baseline gate, prices,
policy violations read from an audit trail, decision rules, the ticket file and the replay folder."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from support_agent.agent.conversation import ConversationError
from support_agent.agent.llm import ModelRequest, ModelUnavailable, ReplayLibrary, replay_file_name
from support_agent.models import Decision, PartialOffer
from support_agent.rules.audit import AuditEntry
from support_agent_local import eval as ev

# --- recall and precision ---------------------------------------------------------------------------------


def test_recall_and_precision_per_category():
    pairs = [
        # expected category, got category, expected route, got route, ticket
        ("refund_request", "refund_request", "escalate", "escalate", "a"),
        ("refund_request", "general", "escalate", "auto", "b"),  # a missed escalation
        ("complaint", "complaint", "escalate", "escalate", "c"),
        ("refund_policy", "refund_request", "auto", "escalate", "d"),  # an over-escalation
        ("order_status", "order_status", "auto", "auto", "e"),
    ]
    got = ev.recall_precision(pairs)
    assert (got["all"]["caught"], got["all"]["expected"]) == (2, 3)
    assert got["all"]["recall"] == pytest.approx(2 / 3)
    assert got["all"]["precision"] == pytest.approx(2 / 3)  # d escalated but should not have
    assert got["refund_request"]["recall"] == 0.5
    # precision is by the category the run gave: two tickets escalated as refund_request, one rightly
    assert (got["refund_request"]["correct"], got["refund_request"]["escalated"]) == (1, 2)
    assert got["complaint"]["recall"] == got["complaint"]["precision"] == 1.0
    assert "order_status" not in got  # nothing expected to escalate or escalated
    assert next(iter(got)) == "all"


def test_recall_is_none_without_expected_escalations():
    got = ev.recall_precision([("general", "general", "auto", "escalate", "x")])
    assert got["all"]["recall"] is None and got["all"]["precision"] == 0.0


# --- pass^k -------------------------------------------------------------------------------------------------


def test_pass_hat_k_is_taus_estimator():
    assert ev.pass_hat_k(4, 4, 4) == 1.0
    assert ev.pass_hat_k(4, 3, 4) == 0.0  # one failure in k of k trials
    assert ev.pass_hat_k(4, 3, 2) == pytest.approx(3 / 6)  # C(3,2)/C(4,2)
    assert ev.pass_hat_k(5, 5, 1) == 1.0 and ev.pass_hat_k(5, 2, 1) == pytest.approx(0.4)
    with pytest.raises(ValueError):
        ev.pass_hat_k(2, 2, 3)


# --- the baseline gate ---------------------------------------------------------------------------------------


def result(recall=1.0, resolution=0.5, cost=0.01, violations=0, unapproved=0, per_category=None):
    escalation = {"all": {"recall": recall}, **(per_category or {})}
    return {
        "summary": {
            "escalation": escalation,
            "resolution_rate": resolution,
            "violations": {"unapproved_action": unapproved, "policy_refusal": violations},
            "cost": {"per_ticket": cost},
        }
    }


def test_no_regression_against_itself():
    assert ev.regressions(result(), result(), ev.Gate()) == []


@pytest.mark.parametrize(
    ("current", "words"),
    [
        (result(recall=0.95), "escalation recall 95.0%"),
        (result(resolution=0.40), "resolution rate 40.0%"),
        (result(cost=0.0112), "cost per ticket $0.0112"),
        (result(violations=1), "policy violations 1"),
        (result(unapproved=1), "policy violations 1"),
        (result(per_category={"complaint": {"recall": 0.5}}), "escalation recall of complaint 50.0%"),
    ],
)
def test_each_regression_is_named(current, words):
    baseline = result(per_category={"complaint": {"recall": 1.0}})
    if "complaint" not in current["summary"]["escalation"]:
        current["summary"]["escalation"]["complaint"] = {"recall": 1.0}
    found = ev.regressions(baseline, current, ev.Gate())
    assert len(found) == 1 and found[0].startswith(words), found


def test_thresholds_allow_small_changes():
    gate = ev.Gate(max_recall_drop=0.05, max_resolution_drop=0.1, max_cost_rise=0.5, max_new_violations=1)
    assert (
        ev.regressions(result(), result(recall=0.96, resolution=0.45, cost=0.014, violations=1), gate) == []
    )
    # an action without approval is never allowed, whatever the thresholds
    assert ev.regressions(result(), result(unapproved=1), gate)


# --- prices ------------------------------------------------------------------------------------------------


def table():
    return ev.PriceTable(
        as_of=date(2026, 11, 28),
        source="test",
        models={
            "claude-sonnet-4": ev.Price(input=3, output=15, cache_write=3.75, cache_read=0.3),
            "claude-sonnet-4-5": ev.Price(input=4, output=20, cache_write=5, cache_read=0.4),
        },
    )


def test_price_by_the_longest_model_id_contained():
    prices = table()
    assert prices.find("claude-sonnet-4-5-20250929")[0] == "claude-sonnet-4-5"
    assert prices.find("us.anthropic.claude-sonnet-4-5-20250929-v1:0")[0] == "claude-sonnet-4-5"
    assert prices.find("claude-sonnet-4-20250514")[0] == "claude-sonnet-4"
    assert prices.find("gpt-something") is None


def test_cost_counts_every_kind_of_token():
    usage = ev.Usage(input=1_000_000, output=100_000, cache_read=2_000_000, cache_write=10_000)
    # 1M × $3 + 0.1M × $15 + 2M × $0.30 + 0.01M × $3.75
    assert table().cost("claude-sonnet-4-20250514", usage) == pytest.approx(3 + 1.5 + 0.6 + 0.0375)
    assert table().cost("unknown-model", usage) is None
    assert usage.prompt == 3_010_000


def test_shipped_price_table_is_dated_and_prices_the_default_models():
    prices = ev.PriceTable.load()
    assert prices.as_of.year >= 2026 and prices.source.startswith("https://")
    for model in ("claude-sonnet-4-5", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "offline"):
        assert prices.find(model) is not None, model
    assert prices.cost("offline", ev.Usage(input=10_000)) == 0


# --- violations from the audit trail ---------------------------------------------------------------------


def entry(seq, action, resource="r", decision="n/a", outcome="ok", **details):
    return AuditEntry(
        session_id="s",
        seq=seq,
        time="t",
        actor="agent",
        action=action,
        resource=resource,
        decision=decision,
        outcome=outcome,
        details=details,
        prev_hash="",
    )


GATED = "requires_approval via slack:#x — rule at line 1: billing:refund on customers/{requester}"


def decided(kind):
    return lambda _approval_id: Decision(kind=kind, by="U1")


def test_an_approved_action_is_no_violation():
    trail = [
        entry(1, "billing:refund", decision=GATED, outcome="pending_approval", tool="issue_refund"),
        entry(2, "approval:resume", "approvals/apr_1", "approve", "running", tool="issue_refund"),
        entry(3, "billing:refund", decision=GATED, outcome="executing", tool="issue_refund"),
        entry(4, "billing:refund", decision=GATED, outcome="executed", tool="issue_refund"),
    ]
    assert ev.violations(trail, decided("approve"), guard_escalated=True) == []


def test_an_action_without_a_recorded_approval_is_a_violation():
    trail = [entry(1, "billing:refund", decision=GATED, outcome="executed", tool="issue_refund")]
    found = ev.violations(trail, decided("approve"), guard_escalated=False)
    assert [v.kind for v in found] == ["unapproved_action"]
    # the trail says approve but the approvals table has no such decision: still a violation
    trail = [
        entry(0, "approval:resume", "approvals/apr_1", "approve", "running", tool="issue_refund"),
        *trail,
    ]
    assert [v.kind for v in ev.violations(trail, lambda _a: None, False)] == ["unapproved_action"]
    # one approval covers one execution, not two
    twice = [*trail, entry(5, "billing:refund", decision=GATED, outcome="executed", tool="issue_refund")]
    assert [v.kind for v in ev.violations(twice, decided("approve"), False)] == ["unapproved_action"]


def test_refusals_and_replies_on_escalated_tickets():
    trail = [
        entry(1, "crm:read", "customers/cus_x", "deny — default", "refused", tool="get_customer"),
        entry(2, "tickets:respond", "tickets/T1", "n/a", "solved"),
    ]
    kinds = [v.kind for v in ev.violations(trail, decided("approve"), guard_escalated=True)]
    assert kinds == ["policy_refusal", "reply_on_escalated"]
    # the same reply on a ticket the guard let through, or after a person decided, is fine
    assert [v.kind for v in ev.violations(trail[1:], decided("approve"), guard_escalated=False)] == []
    after = [entry(0, "approval:resume", "approvals/a", "deny", "running"), trail[1]]
    assert ev.violations(after, decided("deny"), guard_escalated=True) == []
    # the model's own classification can escalate too
    classified = [entry(0, "triage:classify", "model", "escalate", "complaint"), trail[1]]
    assert [v.kind for v in ev.violations(classified, decided("approve"), False)] == ["reply_on_escalated"]


def test_usage_read_from_model_calls():
    trail = [
        entry(
            1,
            "model:invoke",
            "model/claude-sonnet-4-5-20250929",
            "n/a",
            "tool_use",
            input_tokens=10,
            output_tokens=5,
            cache_read_input_tokens=100,
            cache_creation_input_tokens=7,
        ),
        entry(
            2,
            "model:invoke",
            "model/claude-sonnet-4-5-20250929",
            "n/a",
            "end_turn",
            input_tokens=1,
            output_tokens=2,
            cache_read_input_tokens=3,
            cache_creation_input_tokens=0,
        ),
        entry(3, "model:invoke", "model", "n/a", "unavailable", error="timeout"),
    ]
    assert ev.usage_by_model(trail) == {"claude-sonnet-4-5-20250929": ev.Usage(11, 7, 103, 7)}


# --- decisions ---------------------------------------------------------------------------------------------


class FakeApproval:
    def __init__(self, tool="issue_refund", maximum=19900, currency="usd"):
        self.tool = tool
        self.partial = PartialOffer(
            argument="amount_cents", maximum=maximum, currency=currency, label="refund"
        )
        self.escalation = type("E", (), {"category": "refund_request"})()


def ticket(**extra):
    row = {
        "name": "t1",
        "subject": "s",
        "body": "b",
        "requester": "a@example.com",
        "expected_route": "escalate",
    }
    return ev.LabelledTicket.model_validate({**row, **extra})


def test_decision_specs():
    approval = FakeApproval()
    assert ev.decision_for("approve", approval) == {"action": "approve"}
    assert ev.decision_for("partial:50%", approval) == {"action": "partial", "value": "99.50"}
    assert ev.decision_for("partial:2500", approval) == {"action": "partial", "value": "25.00"}
    assert ev.decision_for("partial:99999", approval) == {"action": "partial", "value": "199.00"}  # capped
    assert ev.decision_for("partial:50%", FakeApproval(maximum=1000, currency="jpy")) == {
        "action": "partial",
        "value": "500",
    }
    assert ev.decision_for("deny", approval, "no")["action"] == "deny"
    for bad in ("maybe", "partial:0%", "partial:150%", "partial:"):
        with pytest.raises(ev.EvalInputError):
            ev.check_decide(bad)


def test_rules_first_match_then_default(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "default: deny\nrules:\n"
        "  - {tool: issue_refund, above: 20000, decide: 'partial:10%'}\n"
        "  - {tool: issue_refund, decide: approve}\n"
        "  - {ticket: t1, decide: reply}\n"
    )
    parsed = ev.DecisionRules.parse(str(rules))
    assert parsed.pick(FakeApproval(maximum=50000), ticket())["value"] == "50.00"
    assert parsed.pick(FakeApproval(), ticket())["action"] == "approve"
    assert parsed.pick(FakeApproval(tool="delete_account"), ticket())["action"] == "reply_manually"
    assert parsed.pick(FakeApproval(tool="delete_account"), ticket(name="t2"))["action"] == "deny"
    # a ticket's own decision wins
    assert parsed.pick(FakeApproval(), ticket(decision={"action": "deny", "value": "x"}))["action"] == "deny"
    rules.write_text("rules:\n  - {tool: issue_refund, decide: sometimes}\n")
    with pytest.raises(ev.EvalInputError, match="sometimes"):
        ev.DecisionRules.parse(str(rules))


# --- the ticket file ----------------------------------------------------------------------------------------


def test_csv_and_jsonl_tickets(tmp_path):
    csv_file = tmp_path / "t.csv"
    csv_file.write_text(
        "name,subject,body,requester_email,expected_route,expected_category,expected_actions\n"
        "a,Order,Where is it?,jane.smith@example.com,auto,order_status,none\n"
        "b,Refund,Money back,jane.smith@example.com,escalate,,issue_refund;delete_account\n"
        "c,Hi,Hello,jane.smith@example.com,auto,,\n"
    )
    a, b, c = ev.load_labelled(csv_file)
    assert (a.requester, a.expected_category, a.expected_actions) == (
        "jane.smith@example.com",
        "order_status",
        [],
    )
    assert (b.expected_category, b.expected_actions) == (None, ["issue_refund", "delete_account"])
    assert c.expected_actions is None  # not checked
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text(
        json.dumps({"subject": "s", "body": "b", "requester": "x@example.com", "expected_route": "auto"})
    )
    assert ev.load_labelled(jsonl)[0].name == "ticket-1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '{"subject": "s", "body": "b", "requester": "x@example.com", "expected_route": "maybe"}',
            "expected_route",
        ),
        ('{"subject": "s", "body": "b", "expected_route": "auto"}', "requester"),
        ("not json", "line 1: not JSON"),
        ("", "no tickets"),
        (
            '{"name": "a", "subject": "s", "body": "b", "requester": "x@e.com", "expected_route": "auto"}\n'
            * 2,
            "twice",
        ),
    ],
)
def test_bad_ticket_files_say_where(tmp_path, text, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    with pytest.raises(ev.EvalInputError, match=message):
        ev.load_labelled(path)


# --- replay folders --------------------------------------------------------------------------------------


def recorded(text: str) -> dict:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 2},
    }


def request_for(ticket_id: str, turns: int) -> ModelRequest:
    first = {
        "role": "user",
        "content": f'<ticket_data>\n{{"ticket": {{"id": "{ticket_id}"}}}}\n</ticket_data>',
    }
    messages = [first]
    for n in range(turns):
        messages += [
            {"role": "assistant", "content": [{"type": "text", "text": f"t{n}"}]},
            {"role": "user", "content": "go on"},
        ]
    return ModelRequest("system", [], messages, 100)


def test_replay_library_answers_by_ticket_and_turn(tmp_path: Path):
    (tmp_path / replay_file_name("T/1")).write_text(
        "\n".join(json.dumps(recorded(t)) for t in ("first", "second")) + "\n"
    )
    library = ReplayLibrary(tmp_path)
    # stateless: turn 2 first, then turn 1, as a resumed session and another ticket would interleave
    assert library.create(request_for("T/1", 1)).content[0]["text"] == "second"
    assert library.create(request_for("T/1", 0)).content[0]["text"] == "first"
    with pytest.raises(ModelUnavailable, match="turn 3"):
        library.create(request_for("T/1", 2))
    with pytest.raises(ModelUnavailable, match="no recording"):
        library.create(request_for("other", 0))
    broken = request_for("T/1", 1)
    broken.messages.pop()  # ends with the assistant turn: the API would answer 400
    broken.messages.append({"role": "assistant", "content": "x"})
    with pytest.raises(ConversationError):
        library.create(broken)
    assert replay_file_name("../../etc/passwd") == "_.._etc_passwd.jsonl"
