"""SlackInteraction Lambda: Slack's interactive endpoint (POST /slack/interactions)."""

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
config.settings(config.InteractionSettings)  # a missing variable fails the cold start, naming it


@snapstart.before_snapshot
def prime() -> None:
    """Under SnapStart, what the first request would load goes into the snapshot."""
    composition.prime_slack_endpoint()
    tracer.prime()


@app.post("/slack/interactions")
@tracer.capture_method
def slack_interaction() -> Response[Any]:
    event = app.current_event
    # The endpoint decodes the body (base64 when API Gateway says so) and checks the signature on the bytes.
    answer = composition.slack_endpoint().handle_encoded(
        dict(event.headers or {}), event.body, bool(event.is_base64_encoded)
    )
    metrics.add_metric(name=f"SlackInteraction{answer.status}", unit=MetricUnit.Count, value=1)
    logger.info("slack interaction", extra={"status": answer.status})
    return Response(
        status_code=answer.status, content_type=content_types.APPLICATION_JSON, body=answer.body or ""
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
