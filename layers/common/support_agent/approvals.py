"""Approval requests and decisions, stored beside their session, with guarded state changes.

The first decision wins: recording a decision is a conditional write on `status = pending`, so a second
click, a double submission or a concurrent approver cannot decide twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from support_agent import aws, clock

if TYPE_CHECKING:
    pass

DecisionKind = Literal["approve", "partial", "deny", "reply_manually", "take_over", "send_draft", "expired"]


class Decision(BaseModel):
    """What a person decided (or that the request expired)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    kind: DecisionKind
    by: str = Field(default="", max_length=64, description="Slack user id of the approver")
    by_name: str = Field(default="", max_length=120)
    amount_cents: int | None = Field(default=None, gt=0)
    reason: str = Field(default="", max_length=2000)
    reply: str = Field(default="", max_length=5000)
    at: str = Field(default_factory=clock.iso)


class Approval(BaseModel):
    model_config = ConfigDict(defer_build=True)

    approval_id: str
    session_id: str
    kind: Literal["action", "handoff"] = "action"
    tool: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    args_hash: str | None = None
    tool_use_id: str | None = None
    channel: str
    rule: str = ""
    status: Literal["pending", "decided", "expired"] = "pending"
    escalation: dict[str, Any] = Field(default_factory=dict)
    decision: Decision | None = None
    task_token_set: bool = False
    slack_channel: str | None = None
    slack_ts: str | None = None
    reminders: int = 0
    created_at: str = Field(default_factory=clock.iso)


class AlreadyDecided(Exception):
    def __init__(self, approval: Approval | None) -> None:
        super().__init__("already decided")
        self.approval = approval


def _key(approval_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"APPROVAL#{approval_id}"}, "sk": {"S": "APPROVAL"}}


class ApprovalRepository(aws.DynamoTable):
    def put_item(self, approval: Approval) -> dict[str, Any]:
        """The create as a TransactWriteItems entry (written with the session's state change)."""
        item = {**_key(approval.approval_id), **aws.to_item(approval.model_dump(mode="json"))}
        return {
            "Put": {"TableName": self.table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}
        }

    def get(self, approval_id: str) -> Approval | None:
        item = self.client.get_item(TableName=self.table, Key=_key(approval_id), ConsistentRead=True).get(
            "Item"
        )
        if not item:
            return None
        data = aws.from_item(item)
        for k in ("pk", "sk", "task_token"):
            data.pop(k, None)
        return Approval.model_validate(data)

    def task_token(self, approval_id: str) -> str | None:
        """The Step Functions task token (kept here, never sent to Slack)."""
        item = self.client.get_item(
            TableName=self.table,
            Key=_key(approval_id),
            ConsistentRead=True,
            ProjectionExpression="task_token",
        ).get("Item")
        return item["task_token"]["S"] if item and "task_token" in item else None

    def set_fields(self, approval_id: str, **fields: Any) -> None:
        names = {f"#f{i}": k for i, k in enumerate(fields)}
        values = aws.to_item({f":v{i}": v for i, v in enumerate(fields.values())})
        self.client.update_item(
            TableName=self.table,
            Key=_key(approval_id),
            UpdateExpression="SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(fields))),
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def decide(self, approval_id: str, decision: Decision) -> Approval:
        """Record the first decision; raises AlreadyDecided (with the stored approval) otherwise."""
        status = "expired" if decision.kind == "expired" else "decided"
        try:
            resp = self.client.update_item(
                TableName=self.table,
                Key=_key(approval_id),
                UpdateExpression="SET #s = :s, decision = :d",
                ConditionExpression="attribute_exists(pk) AND #s = :pending",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":s": {"S": status},
                    ":d": aws.to_item({"d": decision.model_dump(mode="json")})["d"],
                    ":pending": {"S": "pending"},
                },
                ReturnValues="ALL_NEW",
            )
        except Exception as exc:
            if aws.is_conditional_failure(exc):
                raise AlreadyDecided(self.get(approval_id)) from None
            raise
        data = aws.from_item(resp["Attributes"])
        for k in ("pk", "sk", "task_token"):
            data.pop(k, None)
        return Approval.model_validate(data)
