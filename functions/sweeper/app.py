"""Sweeper Lambda (scheduled): sessions RUNNING past their lease go to AgentStep to be handed to people;
the daily budget's share used is published."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from support_agent import composition, config

logger = Logger()
metrics = Metrics()
config.settings(config.SweeperSettings)  # a missing variable fails the cold start, naming it


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    swept = composition.sweeper().sweep()
    # A level, every run (0 included): SessionsStuckAlarm reads its maximum.
    metrics.add_metric(name="SessionsStuck", unit=MetricUnit.Count, value=len(swept.stuck))
    metrics.add_metric(name="SessionsRequeued", unit=MetricUnit.Count, value=len(swept.requeued))
    # DailyBudgetAlarm watches it (intake publishes 100 itself the moment the budget runs out).
    metrics.add_metric(
        name="DailyBudgetUsedPercent", unit=MetricUnit.Percent, value=swept.budget_used_percent
    )
    if swept.stuck or swept.requeued:
        logger.warning("sessions swept", extra={"handed_off": swept.stuck, "started_again": swept.requeued})
    if swept.unsent:
        logger.error(
            "messages not sent; the next run finds these sessions again", extra={"unsent": swept.unsent}
        )
    return {
        "stuck": len(swept.stuck),
        "requeued": len(swept.requeued),
        "unsent": len(swept.unsent),
        "budget_used_percent": swept.budget_used_percent,
    }
