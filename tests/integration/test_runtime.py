"""The local runtime behaves like Lambda's SQS event source mapping, and notifier failures are not lost."""

from __future__ import annotations

import json

import boto3
from support_agent_local.functions import invoke
from support_agent_local.runtime import Poller, mappings

from tests.helpers import sqs_event


def test_mappings_come_from_the_template(stack):
    found = {(m.function, m.queue, m.batch_size) for m in mappings(stack)}
    assert found == {("agent_step", "AgentQueue", 1), ("notifier", "NotifyQueue", 5)}


def test_poison_message_is_redriven_to_the_dlq_after_max_receives(stack):
    sqs = boto3.client("sqs")
    sqs.send_message(
        QueueUrl=stack.queue_url("AgentQueue"), MessageBody=json.dumps({"type": "start"})
    )  # no session_id
    poller = Poller(stack)
    for _ in range(5):
        poller.poll_once()
    dlq = sqs.receive_message(QueueUrl=stack.queue_url("AgentDeadLetterQueue"), MaxNumberOfMessages=10).get(
        "Messages", []
    )
    assert [json.loads(m["Body"]) for m in dlq] == [{"type": "start"}]
    assert sqs.receive_message(QueueUrl=stack.queue_url("AgentQueue")).get("Messages", []) == []


def _notice(stack):
    from support_agent.models import Approval, Escalation

    repo = stack.approvals()
    approval = Approval(
        approval_id="apr_test",
        session_id="ses_test",
        tool="issue_refund",
        args={"amount_cents": 100},
        args_hash="h",
        channel="slack:#support-escalations",
        escalation=Escalation(ticket_id="T-9", issue="x", recommendation="y"),
    )
    boto3.client("dynamodb").transact_write_items(TransactItems=[repo.put_item(approval)])
    return sqs_event(
        stack,
        "NotifyQueue",
        [
            {
                "type": "request",
                "approval_id": "apr_test",
                "session_id": "ses_test",
                "channel": "slack:#support-escalations",
                "task_token": "tok",
            }
        ],
    )


def test_notifier_retries_slack_rate_limits_and_server_errors(stack):
    stack.slack.fail_next = [429, 503]
    with stack.environment_of("NotifierFunction"):
        response = invoke("notifier", _notice(stack))
    assert response == {"batchItemFailures": []}
    assert len(stack.slack.of("chat.postMessage")) == 1


def test_notifier_gives_the_record_back_when_slack_stays_down(stack):
    stack.slack.fail_next = [503] * 10
    with stack.environment_of("NotifierFunction"):
        response = invoke("notifier", _notice(stack))
    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-0"}]}
