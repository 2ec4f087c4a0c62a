"""What the AgentStep function does with one queue message."""

from __future__ import annotations

from support_agent.agent.loop import RunResult
from support_agent.agent.wiring import runner_from_env
from support_agent.models import AgentMessage


def handle(message: AgentMessage) -> RunResult:
    """Dispatch a start, resume or expire message to the agent (built per message: no state outlives it)."""
    runner = runner_from_env()
    if message.type == "start":
        return runner.start(message.session_id)
    if message.type == "resume":
        if not message.approval_id or message.decision is None:
            raise ValueError("a resume message needs approval_id and decision")
        return runner.resume(message.session_id, message.approval_id, message.decision)
    if not message.approval_id:
        raise ValueError("an expire message needs approval_id")
    return runner.expire(message.session_id, message.approval_id)
