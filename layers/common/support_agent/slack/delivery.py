"""Carrying a recorded decision to the approval workflow: the approval record decides, SendTaskSuccess
only carries what it holds.

A decision is two writes in two services — the guarded write on the approval (DynamoDB) and the answer to
the workflow's waiting task (Step Functions' SendTaskSuccess) — and no transaction spans both. Rather
than an outbox (a third record, and a poller to drain it), the workflow's own timers are the retry: every
task the workflow waits on has a timeout, and every timeout sends the notifier a reminder with a fresh
task token. So the rules are:

1. The first decision is the guarded write (`status = pending`), and only that write decides. The
   notifier's expiry is a guarded write too (`decide(expired)`), so a person's decision and an expiry
   cannot both win.
2. Whoever answers the workflow — the Slack endpoint after a click, the notifier on a reminder or at
   expiry — answers with the decision *stored on the approval*, never one of its own. A second answer
   is therefore the same answer, and Step Functions accepts only one per token.
3. The notifier stores each new task token, then reads the approval's status in the same write (a
   decided approval is never reminded nor expired: it is delivered with its stored decision).

Crash windows, and what closes each:

- The endpoint dies after the decision is recorded, before SendTaskSuccess: the workflow times out at
  the next reminder and the notifier, finding the approval decided, answers the new token with the
  stored decision (within `ReminderSeconds`). A second click before that re-delivers at once.
- A click reads a token that a reminder has just replaced (TaskTimedOut/InvalidToken): `deliver`
  re-reads the token from the store and tries again while it changes. If the notifier has not stored
  the new token yet, it will, and rule 3 makes it deliver the decision. Either way one of them answers.
- The notifier dies between recording an expiry and answering the task: SQS redelivers the reminder,
  the approval is found expired, and the stored expiry is answered.
- The endpoint dies after SendTaskSuccess, before the Slack message is updated: the workflow goes on,
  and its ShowDecided state (after Resume) has the notifier redraw the message from the stored decision.
- A click after the first decider's whole run (`endpoint.DECIDER_SECONDS`) finds the approval decided:
  it re-delivers the stored decision with the current token (refused if it was answered already), so a
  person who saw Slack's error and clicks again does not wait for the reminder.

On the agent's side a decision is carried out once whatever is delivered twice: `AgentRunner.resume`
claims the session with a guarded move and acts only on the stored decision, and the approval id is the
action's idempotency key.
"""

from __future__ import annotations

from support_agent.messaging import ApprovalWorkflow, TokenRejected
from support_agent.models import Approval
from support_agent.rules.approvals import ApprovalStore

# Token re-reads after a rejection: one reminder can replace a token while a click is in flight; more
# than two changes within one request would mean reminders seconds apart (ReminderSeconds is ≥ 60).
REREADS = 2


def deliver(
    approvals: ApprovalStore, workflow: ApprovalWorkflow, approval: Approval, token: str | None
) -> bool:
    """Answer the waiting task with the approval's stored decision; True when Step Functions took it.

    A rejected token (timed out, replaced by a reminder, answered already) is re-read from the store and
    tried again while it changes. False means no live token was at hand: the notifier delivers the stored
    decision when it stores the next one.
    """
    decision = approval.decision
    if decision is None:
        raise ValueError(f"approval {approval.approval_id} has no recorded decision to deliver")
    tried: set[str] = set()
    while token and token not in tried and len(tried) <= REREADS:
        try:
            workflow.answer(token, decision)
            return True
        except TokenRejected:
            tried.add(token)
            token = approvals.task_token(approval.approval_id)
    return False
