"""Embedded AWS: moto in process, provisioned from template.yaml itself.

Tables, queues, secrets and state machines are created from the template's own resource properties
(intrinsics resolved against samconfig.toml's parameters or the defaults), and a function's environment
is built from the template's Globals and its own Environment, so a handler cannot tell it is local.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
from support_agent import aws

from support_agent_local import moto_patches
from support_agent_local.fake_slack import FakeSlack
from support_agent_local.template import PROJECT_ROOT, Resolver, load_template, samconfig_parameters

if TYPE_CHECKING:
    from support_agent.rules.audit_keys import KmsSigner
    from support_agent.rules.dynamodb import DynamoApprovalStore, DynamoAuditLog, DynamoSessionStore

REGION = "us-east-1"
LAYER_MOUNT = "/opt/python"

# Local stand-ins for the secrets a deployment keeps in Secrets Manager (parameter name → JSON value).
LOCAL_SECRETS: dict[str, dict[str, str]] = {
    "WebhookSecretName": {
        "generic": "local-generic-signing-secret",
        "zendesk": "local-zendesk-signing-secret",
    },
    "SlackSecretName": {"bot_token": "xoxb-local-bot-token", "signing_secret": "local-slack-signing-secret"},
    "AnthropicSecretName": {"api_key": os.environ.get("ANTHROPIC_API_KEY", "")},
}


def fake_credentials() -> None:
    """Credentials and region for moto (never real ones: nothing leaves the process)."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }.items():
        os.environ[key] = value
    os.environ.pop("AWS_PROFILE", None)
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "SupportAgent")


@contextmanager
def metrics_off() -> Iterator[None]:
    """Handlers publish no metrics (EMF lines on stdout) inside the block, unless the caller chose
    otherwise; the variable is put back afterwards, so nothing leaks into later work in the process."""
    saved = os.environ.get("POWERTOOLS_METRICS_DISABLED")
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("POWERTOOLS_METRICS_DISABLED", None)
        else:
            os.environ["POWERTOOLS_METRICS_DISABLED"] = saved


def _close_task_tokens_when_tasks_end() -> None:
    """Step Functions refuses SendTaskSuccess on a token whose task has closed — timed out, or answered
    already (TaskTimedOut). moto keeps the token and accepts the answer silently (it is then lost), so a
    click racing a reminder would look delivered here and be lost: forget each token when its task ends,
    so a late answer is refused (moto says InvalidToken; both are TokenRejected to us)."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_callback as callback_state,
    )

    task: Any = callback_state.StateTaskServiceCallback
    if getattr(task, "_support_agent_patched", False):
        return
    original = task._eval_integration_pattern

    def eval_integration_pattern(self: Any, env: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return original(self, env, *args, **kwargs)
        finally:
            token = (env.states.context_object.context_object_data.get("Task") or {}).get("Token")
            if token:
                env.callback_pool_manager._pool.pop(token, None)

    task._eval_integration_pattern = eval_integration_pattern
    task._support_agent_patched = True


@dataclass
class EmbeddedAws:
    """The stack's stateful resources, emulated in this process."""

    config_env: str = "default"
    parameters: dict[str, str] = field(default_factory=dict)
    template: dict[str, Any] = field(default_factory=load_template)
    # Variables every function also gets (local-only addresses such as STRIPE_API_BASE).
    environment: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Claude when a key is at hand, else the documented offline provider.
        model = {"ModelProvider": "anthropic" if os.environ.get("ANTHROPIC_API_KEY") else "offline"}
        params = {**samconfig_parameters(self.config_env), **model, **self.parameters}
        self.resolver = Resolver(self.template, params)
        self.resources: dict[str, dict[str, Any]] = self.template.get("Resources", {})
        self._mock: Any = None
        self.slack: FakeSlack | None = None
        self.secrets: dict[str, dict[str, Any]] = {k: dict(v) for k, v in LOCAL_SECRETS.items()}

    # --- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> EmbeddedAws:
        """Start moto and create every supported resource of the template."""
        from moto import mock_aws

        fake_credentials()
        moto_patches.apply()
        _close_task_tokens_when_tasks_end()
        self._mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        self._mock.start()
        aws.reset_clients()
        # Secrets cached by Powertools belong to the previous stack in this process (other addresses).
        from aws_lambda_powertools.utilities import parameters

        parameters.clear_caches()  # type: ignore[no-untyped-call]
        self.provision()
        # Slack's Web API is the console stand-in on 127.0.0.1, reached over HTTP by slack_sdk.
        self.slack = FakeSlack().start()
        return self

    def stop(self) -> None:
        if self.slack is not None:
            self.slack.stop()
            self.slack = None
        if self._mock is not None:
            self._mock.stop()
            self._mock = None
        aws.reset_clients()

    def __enter__(self) -> EmbeddedAws:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- provisioning --------------------------------------------------------------------------------

    def provision(self) -> None:
        pending = {
            name: spec
            for name, spec in self.resources.items()
            if spec["Type"] in _CREATORS
            and ("Condition" not in spec or self.resolver.condition(spec["Condition"]))
        }
        # Create in dependency order: a resource whose intrinsics cannot resolve yet waits for the others.
        while pending:
            progressed = False
            for name, spec in list(pending.items()):
                try:
                    props = self.resolver.resolve(spec.get("Properties", {}))
                except KeyError:
                    continue
                _CREATORS[spec["Type"]](self, name, props)
                del pending[name]
                progressed = True
            if not progressed:
                raise RuntimeError(f"cannot resolve properties of {sorted(pending)}")
        self._create_secrets()
        if "EmbeddedDataTable" in self.resolver.refs:
            from support_agent.adapters.embedded import seed

            seed(self.resolver.refs["EmbeddedDataTable"])

    def _create_table(self, name: str, props: dict[str, Any]) -> None:
        table = props.get("TableName") or f"support-agent-local-{name}"
        client = boto3.client("dynamodb", region_name=REGION)
        kwargs: dict[str, Any] = {
            "TableName": table,
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        }
        if props.get("GlobalSecondaryIndexes"):
            kwargs["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        client.create_table(**kwargs)
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            client.update_time_to_live(TableName=table, TimeToLiveSpecification=ttl)
        pitr = props.get("PointInTimeRecoverySpecification")
        if pitr:
            client.update_continuous_backups(TableName=table, PointInTimeRecoverySpecification=pitr)
        self.resolver.refs[name] = table
        self.resolver.attributes[(name, "Arn")] = f"arn:aws:dynamodb:{REGION}:123456789012:table/{table}"

    def _create_queue(self, name: str, props: dict[str, Any]) -> None:
        queue = props.get("QueueName") or f"support-agent-local-{name}"
        attributes: dict[Any, str] = {
            key: json.dumps(value) if isinstance(value, dict) else str(value)
            for key, value in props.items()
            if key in _QUEUE_ATTRIBUTES
        }
        client = boto3.client("sqs", region_name=REGION)
        url = client.create_queue(QueueName=queue, Attributes=attributes)["QueueUrl"]
        self.resolver.refs[name] = url
        self.resolver.attributes[(name, "Arn")] = f"arn:aws:sqs:{REGION}:123456789012:{queue}"
        self.resolver.attributes[(name, "QueueName")] = queue
        self.resolver.attributes[(name, "QueueUrl")] = url

    def _create_state_machine(self, name: str, props: dict[str, Any]) -> None:
        definition_path = PROJECT_ROOT / props["DefinitionUri"]
        definition = definition_path.read_text()
        for key, value in (props.get("DefinitionSubstitutions") or {}).items():
            definition = definition.replace("${" + key + "}", str(value))
        client = boto3.client("stepfunctions", region_name=REGION)
        arn = client.create_state_machine(
            name=props.get("Name") or f"support-agent-local-{name}",
            definition=definition,
            roleArn="arn:aws:iam::123456789012:role/support-agent-local-states",
            type=props.get("Type", "STANDARD"),
        )["stateMachineArn"]
        self.resolver.refs[name] = arn
        self.resolver.attributes[(name, "Arn")] = arn
        self.resolver.attributes[(name, "Name")] = arn.rsplit(":", 1)[-1]

    def _create_key(self, name: str, props: dict[str, Any]) -> None:
        client = boto3.client("kms", region_name=REGION)
        kwargs: dict[str, Any] = {
            "Description": props.get("Description", name),
            "KeySpec": props.get("KeySpec", "SYMMETRIC_DEFAULT"),
            "KeyUsage": props.get("KeyUsage", "ENCRYPT_DECRYPT"),
        }
        if "KeyPolicy" in props:
            kwargs["Policy"] = json.dumps(props["KeyPolicy"])
        meta = client.create_key(**kwargs)["KeyMetadata"]
        self.resolver.refs[name] = meta["KeyId"]
        self.resolver.attributes[(name, "Arn")] = meta["Arn"]
        self.resolver.attributes[(name, "KeyId")] = meta["KeyId"]

    def _create_secrets(self) -> None:
        for parameter, value in self.secrets.items():
            self.put_secret(parameter, value)

    def put_secret(self, parameter: str, value: dict[str, Any]) -> None:
        """Store the secret named by a template parameter (created, or a new version)."""
        client = boto3.client("secretsmanager", region_name=REGION)
        name = self.resolver.parameters.get(parameter)
        if name is None:
            raise KeyError(f"template.yaml has no parameter {parameter}")
        self.secrets[parameter] = value
        try:
            client.create_secret(Name=name, SecretString=json.dumps(value))
        except client.exceptions.ResourceExistsException:
            client.put_secret_value(SecretId=name, SecretString=json.dumps(value))

    def use_parameters(self, **values: str) -> None:
        """Set template parameters after start (what the functions' environments resolve from)."""
        self.resolver.parameters.update(values)

    # --- what functions see --------------------------------------------------------------------------

    def secret(self, parameter: str) -> dict[str, Any]:
        """Local value of the secret named by a template parameter."""
        return self.secrets[parameter]

    def ref(self, name: str) -> str:
        return self.resolver.ref(name)

    def function_ids(self) -> list[str]:
        return [n for n, s in self.resources.items() if s["Type"] == "AWS::Serverless::Function"]

    def function_spec(self, logical_id: str) -> dict[str, Any]:
        return dict(self.resources[logical_id].get("Properties", {}))

    def function_environment(self, logical_id: str) -> dict[str, str]:
        """Globals' and the function's own Environment, resolved; the layer path mapped to the repo."""
        glob = (
            self.template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
        )
        own = self.function_spec(logical_id).get("Environment", {}).get("Variables", {})
        env = {k: str(self.resolver.resolve(v)) for k, v in {**glob, **own}.items()}
        layer = str(PROJECT_ROOT / "layers" / "common")
        env = {k: v.replace(LAYER_MOUNT, layer) if v.startswith(LAYER_MOUNT) else v for k, v in env.items()}
        if self.slack is not None:
            env["SLACK_API_URL"] = self.slack.url
        return {**env, **self.environment}

    def function_for_code(self, code_uri: str) -> str:
        """Logical id of the function whose CodeUri is `code_uri` (for example functions/intake)."""
        for logical_id in self.function_ids():
            if self.function_spec(logical_id).get("CodeUri", "").rstrip("/") == code_uri.rstrip("/"):
                return logical_id
        raise KeyError(f"no function with CodeUri {code_uri} in template.yaml")

    @contextmanager
    def environment_of(self, logical_id: str) -> Iterator[dict[str, str]]:
        """Run a block with the function's environment set (restored afterwards)."""
        from support_agent.composition import forget

        env = self.function_environment(logical_id)
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        forget()
        try:
            yield env
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            forget()

    def sessions(self) -> DynamoSessionStore:
        """The sessions of this stack (for the demo, the runtime and tests)."""
        from support_agent.rules.dynamodb import DynamoSessionStore

        return DynamoSessionStore(self.ref("SessionsTable"))

    def approvals(self) -> DynamoApprovalStore:
        """Approvals and handoff notices of this stack."""
        from support_agent.rules.dynamodb import DynamoApprovalStore

        return DynamoApprovalStore(self.ref("SessionsTable"), audit=self.audit())

    def audit(self) -> DynamoAuditLog:
        """The audit trail of this stack, with its MAC key and the session records' heads (as operators
        verify it)."""
        from support_agent.rules.audit_keys import KmsMacKey
        from support_agent.rules.dynamodb import DynamoAuditLog

        return DynamoAuditLog(
            self.ref("AuditTable"),
            key=KmsMacKey(self.ref("AuditMacKey")),
            sessions_table=self.ref("SessionsTable"),
        )

    def audit_signer(self) -> KmsSigner:
        """The key that signs digests and export seals (an operator's, never a function's)."""
        from support_agent.rules.audit_keys import KmsSigner

        return KmsSigner(self.ref("AuditSigningKey"))

    def queue_url(self, logical_id: str) -> str:
        return self.resolver.ref(logical_id)

    def queue_arn(self, logical_id: str) -> str:
        return self.resolver.get_att(logical_id, "Arn")


_QUEUE_ATTRIBUTES = {
    "VisibilityTimeout",
    "MessageRetentionPeriod",
    "RedrivePolicy",
    "DelaySeconds",
    "ReceiveMessageWaitTimeSeconds",
    "FifoQueue",
    "ContentBasedDeduplication",
    "MaximumMessageSize",
}

_CREATORS: dict[str, Any] = {
    "AWS::DynamoDB::Table": EmbeddedAws._create_table,
    "AWS::SQS::Queue": EmbeddedAws._create_queue,
    "AWS::Serverless::StateMachine": EmbeddedAws._create_state_machine,
    "AWS::KMS::Key": EmbeddedAws._create_key,
}
