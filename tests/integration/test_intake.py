from __future__ import annotations

import json

import boto3
import pytest
from support_agent.rules.audit import verify
from support_agent.rules.sessions import session_id_for
from support_agent_local import events
from support_agent_local.emulator import LOCAL_SECRETS
from support_agent_local.functions import invoke

from tests.helpers import queue_messages, run_sample, scan

INTAKE_EVENTS = [name for name, s in events.manifest().items() if s.function == "intake"]


def body(response):
    return json.loads(response["body"])


@pytest.mark.parametrize("name", INTAKE_EVENTS)
def test_every_intake_sample_event_gives_its_documented_answer(intake_env, name):
    response = run_sample(intake_env, name)
    assert response["statusCode"] == events.sample(name).spec["expect"]["statusCode"], body(response)


def test_signed_generic_webhook_creates_session_audit_and_queue_message(intake_env):
    response = run_sample(intake_env, "intake_webhook_generic.json")
    assert response["statusCode"] == 202
    session_id = body(response)["session_id"]
    session = intake_env.sessions().get(session_id)
    assert session.state.value == "queued"
    assert session.ticket.id == "T-1001" and session.ticket.requester.email == "jane.smith@example.com"
    assert queue_messages(intake_env.queue_url("AgentQueue")) == [{"type": "start", "session_id": session_id}]
    trail = intake_env.audit()
    actions = [e.action for e in trail.entries(session_id)]
    assert actions == ["tickets:read", "budget:session_slot", "queue:send"]
    assert verify(trail).ok
    # No ticket text in the trail.
    assert "processing" not in json.dumps([e.model_dump() for e in trail.entries(session_id)])


def test_zendesk_webhook_normalised(intake_env):
    response = run_sample(intake_env, "intake_webhook_zendesk.json")
    session = intake_env.sessions().get(body(response)["session_id"])
    assert session.ticket.source == "zendesk"
    assert session.ticket.id == "4829"
    assert session.ticket.customer_id == "cus_jane"


def test_duplicate_delivery_answers_200_with_same_session_and_writes_nothing(intake_env):
    first = body(run_sample(intake_env, "intake_webhook_generic.json"))
    sessions_before = len(scan(intake_env.ref("SessionsTable")))
    queue_messages(intake_env.queue_url("AgentQueue"))
    dup = invoke(
        "intake", events.prepare(events.sample("intake_webhook_generic_duplicate.json"), LOCAL_SECRETS)
    )
    assert dup["statusCode"] == 200
    assert body(dup)["session_id"] == first["session_id"]
    assert len(scan(intake_env.ref("SessionsTable"))) == sessions_before
    trail = intake_env.audit()
    assert len(trail.entries(first["session_id"])) == 3


@pytest.mark.parametrize(
    ("name", "status", "reason"),
    [
        ("intake_webhook_generic_tampered.json", 401, "signature does not match the body"),
        ("intake_webhook_generic_stale.json", 401, "outside the 5-minute window"),
        ("intake_webhook_generic_malformed.json", 400, "ticket.requester.email"),
    ],
)
def test_refusals_change_nothing_but_one_audit_entry(intake_env, name, status, reason):
    response = run_sample(intake_env, name)
    assert response["statusCode"] == status
    assert reason in body(response)["error"]
    assert scan(intake_env.ref("SessionsTable")) == []
    assert scan(intake_env.ref("BudgetsTable")) == []
    assert queue_messages(intake_env.queue_url("AgentQueue")) == []
    audit = scan(intake_env.ref("AuditTable"))
    assert len(audit) == 1
    assert audit[0]["decision"]["S"] == "rejected"
    assert "Refund me" not in json.dumps(audit) and "Where is my order" not in json.dumps(audit)
    assert LOCAL_SECRETS["WebhookSecretName"]["generic"] not in json.dumps(response)


def test_unknown_source_is_404(intake_env):
    event = events.prepare(events.sample("intake_webhook_generic.json"), LOCAL_SECRETS)
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/webhooks/freshdesk"
    event["pathParameters"] = {"source": "freshdesk"}
    response = invoke("intake", event)
    assert response["statusCode"] == 404
    assert scan(intake_env.ref("SessionsTable")) == []


def test_signature_checked_before_parsing(intake_env):
    event = events.sample("intake_webhook_generic.json").raw()
    event["body"] = "{not json"
    response = invoke("intake", event)  # signed with a placeholder: must be 401, not 400
    assert response["statusCode"] == 401


def test_over_daily_budget_goes_to_handoff_not_lost(intake_env, monkeypatch, capsys):
    from support_agent.rules.policy import load_policy

    policy = load_policy(intake_env.function_environment("IntakeFunction")["POLICY_FILE"])
    policy.document.budget.max_sessions_per_day = 1
    monkeypatch.setattr("support_agent.composition.cached_policy", lambda _p: policy)
    assert run_sample(intake_env, "intake_webhook_generic.json")["statusCode"] == 202
    second = run_sample(intake_env, "intake_webhook_zendesk.json")
    assert second["statusCode"] == 202
    data = body(second)
    assert data["status"] == "handoff" and data["reason"] == "daily_budget_exhausted"
    session = intake_env.sessions().get(data["session_id"])
    assert session.state.value == "handoff" and session.reason == "daily_budget_exhausted"
    entries = intake_env.audit().entries(data["session_id"])
    assert [(e.action, e.outcome) for e in entries][-2:] == [
        ("budget:session_slot", "1/1"),
        ("session:handoff", "daily_budget_exhausted"),
    ]
    # Only the first session reached the agent queue.
    assert len(queue_messages(intake_env.queue_url("AgentQueue"))) == 1
    # An exhausted budget is published at once for DailyBudgetAlarm (the sweeper publishes the share
    # every five minutes; intake reads nothing back per ticket).
    published = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert [m.get("DailyBudgetUsedPercent") for m in published if "DailyBudgetUsedPercent" in m] == [[100.0]]


def test_queued_duplicate_is_requeued_so_nothing_is_lost(intake_env):
    first = body(run_sample(intake_env, "intake_webhook_generic.json"))
    sqs = boto3.client("sqs")
    sqs.purge_queue(QueueUrl=intake_env.queue_url("AgentQueue"))  # the message was lost
    invoke("intake", events.prepare(events.sample("intake_webhook_generic_duplicate.json"), LOCAL_SECRETS))
    assert queue_messages(intake_env.queue_url("AgentQueue")) == [
        {"type": "start", "session_id": first["session_id"]}
    ]


def test_zendesk_event_subscription_no_email_and_long_description_are_kept(intake_env):
    event = body(run_sample(intake_env, "intake_webhook_zendesk_event.json"))
    assert event["session_id"] == session_id_for("zendesk", "ticket.created:4830")
    voice = intake_env.sessions().get(
        body(run_sample(intake_env, "intake_webhook_zendesk_no_email.json"))["session_id"]
    )
    assert (voice.ticket.requester.email, voice.ticket.requester.id) == (None, "377002")
    long = intake_env.sessions().get(
        body(run_sample(intake_env, "intake_webhook_zendesk_long.json"))["session_id"]
    )
    sent = json.loads(events.sample("intake_webhook_zendesk_long.json").raw()["body"])["ticket"][
        "description"
    ]
    assert long.ticket.body == sent.strip() and len(long.ticket.body) > 20_000  # whole (outer spaces trimmed)
    assert len(queue_messages(intake_env.queue_url("AgentQueue"))) == 3


def test_other_zendesk_events_start_nothing(intake_env):
    answer = run_sample(intake_env, "intake_webhook_zendesk_update_ignored.json")
    assert answer["statusCode"] == 200 and body(answer)["status"] == "ignored"
    assert scan(intake_env.ref("SessionsTable")) == []
    assert queue_messages(intake_env.queue_url("AgentQueue")) == []
