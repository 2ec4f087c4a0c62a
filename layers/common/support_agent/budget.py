"""Budgets: sessions per day (taken at intake) and tokens per session (charged by the agent).

Both are single conditional DynamoDB updates, so they are exact however many functions run at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta, tzinfo
from typing import TYPE_CHECKING

from support_agent import aws, clock

if TYPE_CHECKING:
    pass

_KEEP_DAYS = 35


@dataclass(frozen=True)
class Slot:
    granted: bool
    day: str
    used: int
    limit: int


class DailySessionBudget(aws.DynamoTable):
    """Counter of sessions started per day (a day in the policy's time zone, UTC by default)."""

    def take(self, limit: int, tz: tzinfo) -> Slot:
        """Take one slot of today's budget if one is left; never goes over `limit`."""
        day = clock.now().astimezone(tz).date().isoformat()
        expires = int((clock.now() + timedelta(days=_KEEP_DAYS)).timestamp())
        try:
            resp = self.client.update_item(
                TableName=self.table,
                Key={"pk": {"S": f"sessions#{day}"}},
                UpdateExpression="ADD used :one SET expires_at = :ttl, #limit = :max",
                ConditionExpression="attribute_not_exists(used) OR used < :max",
                ExpressionAttributeNames={"#limit": "limit"},
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":max": {"N": str(limit)},
                    ":ttl": {"N": str(expires)},
                },
                ReturnValues="UPDATED_NEW",
            )
        except Exception as exc:
            if aws.is_conditional_failure(exc):
                return Slot(False, day, limit, limit)
            raise
        return Slot(True, day, int(resp["Attributes"]["used"]["N"]), limit)

    def used(self, tz: tzinfo) -> int:
        """Sessions taken today."""
        day = clock.now().astimezone(tz).date().isoformat()
        resp = self.client.get_item(
            TableName=self.table, Key={"pk": {"S": f"sessions#{day}"}}, ConsistentRead=True
        )
        return int(resp.get("Item", {}).get("used", {}).get("N", "0"))


class SessionTokenBudget(aws.DynamoTable):
    """Tokens spent by one session, kept on the session item."""

    def charge(self, session_id: str, tokens: int, limit: int) -> int | None:
        """Add `tokens` if the total stays within `limit`; returns the new total, or None if refused."""
        if tokens > limit:
            return None
        try:
            resp = self.client.update_item(
                TableName=self.table,
                Key={"pk": {"S": f"SESSION#{session_id}"}, "sk": {"S": "SESSION"}},
                UpdateExpression="ADD tokens_used :n",
                ConditionExpression=(
                    "attribute_exists(pk) AND (attribute_not_exists(tokens_used) OR tokens_used <= :room)"
                ),
                ExpressionAttributeValues={":n": {"N": str(tokens)}, ":room": {"N": str(limit - tokens)}},
                ReturnValues="UPDATED_NEW",
            )
        except Exception as exc:
            if aws.is_conditional_failure(exc):
                return None
            raise
        return int(resp["Attributes"]["tokens_used"]["N"])

    def record_overrun(self, session_id: str, tokens: int) -> int:
        """Record tokens already spent even past the limit (the trail must show what was used)."""
        resp = self.client.update_item(
            TableName=self.table,
            Key={"pk": {"S": f"SESSION#{session_id}"}, "sk": {"S": "SESSION"}},
            UpdateExpression="ADD tokens_used :n",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":n": {"N": str(tokens)}},
            ReturnValues="UPDATED_NEW",
        )
        return int(resp["Attributes"]["tokens_used"]["N"])
