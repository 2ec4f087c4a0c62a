"""The composition root: the one place that reads settings and decides which implementation serves each
port (DynamoDB, SQS, Step Functions, Slack's Web API; embedded or real adapters; the model provider).

Handlers call one builder each. Everything built here is cheap or cached per process (clients, the
policy, the help-center index), so a warm Lambda reuses it and no state outlives a request.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from support_agent.config import (
    AgentSettings,
    Common,
    IntakeSettings,
    InteractionSettings,
    NotifierSettings,
    SlackSettings,
    SweeperSettings,
    settings,
)
from support_agent.rules.policy import Policy, cached_policy
from support_agent.secrets import SecretsManagerStore

# Each builder imports what its function uses, so the Intake function never loads the agent or Slack.
if TYPE_CHECKING:
    from support_agent.adapters.ports import Accounts, Adapters, Billing, Crm, KnowledgeBase, Tickets
    from support_agent.agent.llm import ModelProvider
    from support_agent.agent.runner import AgentRunner
    from support_agent.agent.sweeper import Sweeper
    from support_agent.intake.service import IntakeService
    from support_agent.rules.audit_keys import KmsMacKey
    from support_agent.rules.dynamodb import DynamoAuditLog
    from support_agent.slack.client import ApproverDirectory, SlackTiming, WebApiSlack
    from support_agent.slack.endpoint import SlackEndpoint
    from support_agent.slack.notifier import Notifier


def policy(s: Common) -> Policy:
    return cached_policy(s.policy_file)


@cache
def _audit_key(key_id: str) -> KmsMacKey:
    # Cached per process: the e-mail pseudonyms it computes are cached on the way.
    from support_agent.rules.audit_keys import KmsMacKey

    return KmsMacKey(key_id)


def audit_log(s: Common) -> DynamoAuditLog:
    """The audit trail, sealed with the KMS MAC key, anchoring heads on session records."""
    from support_agent.rules.dynamodb import DynamoAuditLog

    return DynamoAuditLog(s.audit_table, key=_audit_key(s.audit_mac_key_id), sessions_table=s.sessions_table)


def intake_service() -> IntakeService:
    """The Intake function's service."""
    from support_agent.intake.service import IntakeService
    from support_agent.messaging import SqsQueue
    from support_agent.rules.dynamodb import DynamoDailyBudget, DynamoSessionStore

    s = settings(IntakeSettings)
    audit = audit_log(s)
    sessions = DynamoSessionStore(s.sessions_table, s.session_ttl_days, heads=audit.heads)
    return IntakeService(
        policy=policy(s),
        sessions=sessions,
        budget=DynamoDailyBudget(s.budgets_table, sessions, audit=audit),
        audit=audit,
        queue=SqsQueue(s.agent_queue_url),
        secrets=SecretsManagerStore(s.secrets_max_age_seconds),
        webhook_secret_name=s.webhook_secret_name,
        tolerance_seconds=s.signature_tolerance_seconds,
    )


def adapters(s: AgentSettings, remaining: Callable[[], float] | None = None) -> Adapters:
    """The backend the configuration names for each port. `remaining` bounds the HTTP adapters' retries by
    the invocation's remaining time. Each real backend is imported only when chosen (cold start)."""
    from support_agent.adapters.ports import Adapters

    secrets = SecretsManagerStore(s.secrets_max_age_seconds)
    embedded = _embedded(s.embedded_data_table) if s.embedded_data_table else None
    crm: Crm
    if s.crm_backend == "customer_api":
        from support_agent.adapters.customer_api import CustomerApiCrm

        crm = CustomerApiCrm.from_secret(secrets.get_json(s.customer_api_secret_name), remaining=remaining)
    else:
        crm = _need(embedded).crm
    return Adapters(
        tickets=_tickets(s, secrets, remaining)
        if s.tickets_backend == "zendesk"
        else _need(embedded).tickets,
        crm=crm,
        billing=_billing(s, secrets, crm) if s.billing_backend == "stripe" else _need(embedded).billing,
        accounts=_accounts(s, crm) if s.accounts_backend == "cognito" else _need(embedded).accounts,
        kb=_knowledge(s, secrets, remaining),
    )


def _need(embedded: Adapters | None) -> Adapters:
    if embedded is None:  # AgentSettings refuses this configuration at cold start
        raise RuntimeError("EMBEDDED_DATA_TABLE is required while a backend is `embedded`")
    return embedded


def _embedded(table: str) -> Adapters:
    from support_agent.adapters.embedded import embedded_adapters
    from support_agent.adapters.knowledge import MarkdownKnowledgeBase

    return embedded_adapters(table, MarkdownKnowledgeBase.bundled())


def _tickets(
    s: AgentSettings, secrets: SecretsManagerStore, remaining: Callable[[], float] | None
) -> Tickets:
    from support_agent.adapters.zendesk import ZendeskTickets

    return ZendeskTickets.from_secret(secrets.get_json(s.zendesk_secret_name), remaining=remaining)


def _billing(s: AgentSettings, secrets: SecretsManagerStore, crm: Crm) -> Billing:
    from support_agent.adapters.stripe_billing import StripeBilling

    key = str(secrets.get_json(s.stripe_secret_name).get("api_key", ""))
    if s.stripe_api_base:  # the local emulator (localstripe) rejects a refund's `reason`; Stripe takes it
        return StripeBilling(key, crm, api_base=s.stripe_api_base, refund_reason=None)
    return StripeBilling(key, crm)


def _accounts(s: AgentSettings, crm: Crm) -> Accounts:
    from support_agent.adapters.cognito_accounts import CognitoAccounts

    return CognitoAccounts(s.cognito_user_pool_id, crm, lookup=s.cognito_user_lookup)


def _knowledge(
    s: AgentSettings, secrets: SecretsManagerStore, remaining: Callable[[], float] | None
) -> KnowledgeBase:
    from support_agent.adapters.knowledge import MarkdownKnowledgeBase

    if s.knowledge_backend == "zendesk":
        from support_agent.adapters.zendesk import ZendeskHelpCenter

        secret = secrets.get_json(s.zendesk_secret_name)
        return ZendeskHelpCenter.from_secret(secret, locale=s.help_center_locale, remaining=remaining)
    if s.knowledge_folder:
        return MarkdownKnowledgeBase.at(Path(s.knowledge_folder))
    return MarkdownKnowledgeBase.bundled()


def provider(s: AgentSettings) -> ModelProvider:
    """MODEL_PROVIDER: anthropic | bedrock | offline | replay:PATH (a file, or a folder of recordings per
    ticket); auto = anthropic if a key exists, else offline."""
    from support_agent.agent.llm import AnthropicProvider, replay
    from support_agent.agent.offline import OfflineProvider

    choice = s.model_provider
    if choice.startswith("replay:"):
        return replay(choice.split(":", 1)[1])
    if choice == "offline":
        return OfflineProvider(s.model_id)
    if choice == "bedrock":
        return AnthropicProvider.bedrock(s.bedrock_model_id, s.aws_region, s.model_timeout_seconds)
    key = s.anthropic_api_key.get_secret_value() if s.anthropic_api_key else ""
    if not key and s.anthropic_secret_name:
        try:
            secret = SecretsManagerStore(s.secrets_max_age_seconds).get_json(s.anthropic_secret_name)
            key = str(secret.get("api_key", ""))
        except Exception:  # no secret: only acceptable when the configuration allowed a fallback
            if choice == "anthropic":
                raise
    if key:
        return AnthropicProvider.from_api_key(key, s.model_id, s.model_timeout_seconds)
    if choice == "anthropic":
        raise RuntimeError("MODEL_PROVIDER=anthropic but no API key in Secrets Manager")
    return OfflineProvider(s.model_id)


def agent_runner(
    model: ModelProvider | None = None, remaining: Callable[[], float] | None = None
) -> AgentRunner:
    """The AgentStep function's runner (built per message: no state outlives it)."""
    from support_agent.agent.decisions import HandoffFollowUps
    from support_agent.agent.loop import TurnLoop
    from support_agent.agent.outcomes import OutcomeWriter
    from support_agent.agent.runner import AgentRunner
    from support_agent.messaging import SqsQueue, StepFunctionsWorkflow
    from support_agent.rules.dynamodb import (
        DynamoApprovalStore,
        DynamoSessionCommitter,
        DynamoSessionStore,
        DynamoTokenBudget,
    )

    s = settings(AgentSettings)
    rules = policy(s)
    audit = audit_log(s)
    sessions = DynamoSessionStore(s.sessions_table, heads=audit.heads)
    approvals = DynamoApprovalStore(s.sessions_table, audit=audit)
    commits = DynamoSessionCommitter(sessions, approvals, audit)
    ports = adapters(s, remaining)
    loop = TurnLoop(
        rules,
        model or provider(s),
        DynamoTokenBudget(s.sessions_table),
        max_turns=s.max_turns,
        remaining=remaining,
        call_timeout=s.model_timeout_seconds,
    )
    outcomes = OutcomeWriter(
        rules,
        ports,
        commits,
        StepFunctionsWorkflow(s.approval_state_machine_arn),
        SqsQueue(s.notify_queue_url),
    )
    return AgentRunner(
        rules,
        sessions,
        approvals,
        audit,
        ports,
        loop,
        outcomes,
        HandoffFollowUps(rules, ports, commits),
        lease_seconds=s.lease_seconds,
    )


def sweeper() -> Sweeper:
    """The Sweeper function's service: running sessions past their lease go back to AgentStep to be handed off."""
    from support_agent.agent.sweeper import Sweeper
    from support_agent.messaging import SqsQueue
    from support_agent.rules.dynamodb import DynamoDailyBudget, DynamoSessionStore

    s = settings(SweeperSettings)
    return Sweeper(
        DynamoSessionStore(s.sessions_table),
        SqsQueue(s.agent_queue_url),
        DynamoDailyBudget(s.budgets_table),
        policy(s),
    )


@cache
def _slack(
    secret_name: str, api_url: str, max_age: int, timing: SlackTiming
) -> tuple[WebApiSlack, ApproverDirectory, str]:
    # Cached per process: the client's connections and the user-group cache outlive one request.
    from support_agent.slack.client import ApproverDirectory, WebApiSlack

    secret = SecretsManagerStore(max_age).get_json(secret_name)
    client = WebApiSlack(str(secret["bot_token"]), api_url, timing)
    return client, ApproverDirectory(client), str(secret["signing_secret"])


def _slack_for(s: SlackSettings, timing: SlackTiming) -> tuple[WebApiSlack, ApproverDirectory, str]:
    return _slack(s.slack_secret_name, s.slack_api_url, s.secrets_max_age_seconds, timing)


def notifier() -> Notifier:
    """The Notifier function's service."""
    from support_agent.messaging import StepFunctionsWorkflow
    from support_agent.rules.dynamodb import DynamoApprovalStore
    from support_agent.slack.client import BACKGROUND
    from support_agent.slack.notifier import Notifier

    s = settings(NotifierSettings)
    client, _directory, _signing = _slack_for(s, BACKGROUND)
    workflow = StepFunctionsWorkflow("")  # answers tasks by token; starts none
    audit = audit_log(s)
    return Notifier(
        DynamoApprovalStore(s.sessions_table, audit=audit),
        audit,
        client,
        workflow,
        s.max_reminders,
    )


def slack_endpoint() -> SlackEndpoint:
    """The SlackInteraction function's service."""
    from support_agent.messaging import SqsQueue, StepFunctionsWorkflow
    from support_agent.rules.dynamodb import DynamoApprovalStore
    from support_agent.slack.client import INTERACTIVE
    from support_agent.slack.endpoint import SlackEndpoint

    s = settings(InteractionSettings)
    client, directory, signing_secret = _slack_for(s, INTERACTIVE)
    audit = audit_log(s)
    return SlackEndpoint(
        policy=policy(s),
        approvals=DynamoApprovalStore(s.sessions_table, audit=audit),
        audit=audit,
        slack=client,
        directory=directory,
        workflow=StepFunctionsWorkflow(""),
        agent_queue=SqsQueue(s.agent_queue_url),
        signing_secret=signing_secret,
    )


def _prime(kind: type[Common], modules: tuple[str, ...], clients: tuple[str, ...]) -> None:
    """Import a builder's modules, load the policy and create the AWS clients it will use: what its first
    request would load, short of the network (no secret is fetched)."""
    from support_agent import aws

    for name in modules:
        importlib.import_module(name)
    s = settings(kind)
    policy(s)
    _audit_key(s.audit_mac_key_id)
    for client in clients:
        getattr(aws, client)()


def prime_intake() -> None:
    """What intake_service() and its first request load, for a SnapStart snapshot."""
    _prime(
        IntakeSettings,
        ("support_agent.intake.service", "support_agent.messaging", "support_agent.rules.dynamodb"),
        ("dynamodb", "sqs", "kms"),
    )


def prime_slack_endpoint() -> None:
    """What slack_endpoint() and its first request load, for a SnapStart snapshot (not the Slack secret)."""
    _prime(
        InteractionSettings,
        (
            "support_agent.slack.endpoint",
            "support_agent.slack.client",
            "support_agent.messaging",
            "support_agent.rules.dynamodb",
        ),
        ("dynamodb", "sqs", "stepfunctions", "kms"),
    )


def forget() -> None:
    """Drop cached settings and clients (the local runtime switches environments and endpoints)."""
    from support_agent import aws, config

    config.forget()
    _slack.cache_clear()
    _audit_key.cache_clear()
    aws.reset_clients()
