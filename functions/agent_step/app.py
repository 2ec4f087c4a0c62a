"""AgentStep Lambda: runs or resumes sessions from the AgentQueue (partial batch failures)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from support_agent import composition, config
from support_agent.models import AgentMessage
from support_agent.observability import LazyTracer

logger = Logger()
tracer = LazyTracer()
metrics = Metrics()
# A wholly failed batch is reported record by record (the same retry as raising, without an error stack).
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
config.settings(config.AgentSettings)  # a missing variable fails the cold start, naming it


@tracer.capture_method
def record_handler(record: SQSRecord, lambda_context: LambdaContext | None = None) -> None:
    message = AgentMessage.model_validate_json(record.body)
    logger.set_correlation_id(message.session_id)
    remaining = (lambda: lambda_context.get_remaining_time_in_millis() / 1000) if lambda_context else None
    result = composition.agent_runner(remaining=remaining).handle(message)
    metrics.add_metric(name=f"Outcome_{result.outcome}", unit=MetricUnit.Count, value=1)
    logger.info(
        "session step done", extra={"type": message.type, "outcome": result.outcome, "reason": result.reason}
    )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> Any:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
