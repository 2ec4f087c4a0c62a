"""The fault-injection table: every fault ends with each ticket answered or with a person, none left
queued or running, and nothing run twice (the table `python -m support_agent_local.faults` prints)."""

from __future__ import annotations

import pytest
from support_agent_local.faults import FAULTS, run_fault

pytestmark = pytest.mark.slow

# What each fault must come to: (refund ticket, order ticket), as state[:reason].
EXPECTED = {
    "none": ("responded", "responded"),
    "model 400 on every call": ("handoff:model_unavailable", "handoff:model_unavailable"),
    "model 401 (rotated key)": ("handoff:model_unavailable", "handoff:model_unavailable"),
    "model 429 twice, then answers": ("responded", "responded"),
    "model 500 on every call": ("handoff:model_unavailable", "handoff:model_unavailable"),
    "model 529 once, then answers": ("responded", "responded"),
    "model timeouts": ("handoff:model_unavailable", "handoff:model_unavailable"),
    "DynamoDB throttling (3 writes)": ("responded", "responded"),
    # The first transaction is intake's (session and slot, the sender retries) or the agent's commit
    # (handed off), depending on the order of writes: either way the ticket ends answered or with people.
    "DynamoDB transaction conflict": (None, "responded"),
    "Step Functions unavailable": ("handoff:approval_workflow_unavailable", "responded"),
    "SQS unavailable (sends)": ("responded", "responded"),
    "Slack 429 then 503": ("responded", "responded"),
    "Lambda killed before the outcome": ("handoff:run_interrupted", "responded"),
}


# The whole table takes minutes (`make faults` prints it); the suite runs one fault of each kind that needs
# machinery of its own: a retried model error, a cancelled transaction, a lost queue message (the sweeper
# starts it again) and a killed run (the sweeper hands it off).
IN_THE_SUITE = [
    "model 529 once, then answers",
    "DynamoDB transaction conflict",
    "SQS unavailable (sends)",
    "Lambda killed before the outcome",
]


@pytest.mark.parametrize("name", IN_THE_SUITE)
def test_every_ticket_ends_answered_or_with_a_person_and_nothing_runs_twice(name):
    row = run_fault(name, FAULTS[name])
    assert row.running == 0, row
    assert row.refunds <= 1 and row.most_replies <= 1, row
    refund, order = row.outcomes.values()  # "state:reason"
    want_refund, want_order = EXPECTED[name]
    for got, want in ((refund, want_refund), (order, want_order)):
        if want is not None:
            assert got.startswith(want), row
    if name in {"Lambda killed before the outcome", "SQS unavailable (sends)"}:
        assert row.swept == 1, row


def test_the_expectations_cover_the_whole_table():
    assert set(EXPECTED) == set(FAULTS) and set(IN_THE_SUITE) <= set(FAULTS)
