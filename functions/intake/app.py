"""Intake Lambda: ticketing-system webhooks on the HTTP API (POST /webhooks/{source})."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from support_agent import composition, config, snapstart
from support_agent.observability import LazyTracer

logger = Logger()
tracer = LazyTracer()
metrics = Metrics()
app = APIGatewayHttpResolver()
config.settings(config.IntakeSettings)  # a missing variable fails the cold start, naming it


@snapstart.before_snapshot
def prime() -> None:
    """Under SnapStart, what the first request would load goes into the snapshot."""
    composition.prime_intake()
    tracer.prime()


@app.post("/webhooks/<source>")
@tracer.capture_method
def receive_webhook(source: str) -> Response[dict[str, Any]]:
    event = app.current_event
    # The signature covers the bytes the sender signed: the service decodes (base64 when API Gateway says
    # so), never re-serialises, and refuses a body that is too large or not valid base64 with a 4xx.
    # Built per request: cheap (clients and policy are cached), and no state outlives the request.
    result = composition.intake_service().receive_encoded(
        source,
        dict(event.headers or {}),
        event.body,
        bool(event.is_base64_encoded),
        str((event.raw_event.get("requestContext") or {}).get("requestId") or ""),
    )
    if result.session_id:
        logger.set_correlation_id(result.session_id)
    for name in result.metrics:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    if result.budget_used_percent is not None:  # DailyBudgetAlarm watches it
        metrics.add_metric(
            name="DailyBudgetUsedPercent", unit=MetricUnit.Percent, value=result.budget_used_percent
        )
    logger.info("webhook handled", extra={"source": source, "status": result.status, **result.body})
    return Response(status_code=result.status, content_type=content_types.APPLICATION_JSON, body=result.body)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
