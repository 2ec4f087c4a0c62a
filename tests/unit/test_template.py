"""template.yaml's operations and least-privilege rules, read with intrinsics kept as data (no AWS, no moto)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from support_agent_local.template import TEMPLATE_PATH, load_template

TEMPLATE = load_template()
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE["Resources"]
GLOBAL_FUNCTION = TEMPLATE["Globals"]["Function"]
GLOBAL_ENV = GLOBAL_FUNCTION["Environment"]["Variables"]

# The values CloudWatch Logs accepts for a log group's retention.
RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922]
RETENTION_DAYS += [3288, 3653]
# The anthropic SDK client the agent builds (support_agent.agent.llm): 3 retries, backoff capped at 8 s.
MODEL_SDK_RETRIES = 3
MODEL_SDK_MAX_BACKOFF = 8
# What a session does besides waiting for the model (DynamoDB writes, tools) plus a cold start, at most.
SESSION_OVERHEAD_SECONDS = 20
AUDIT_ACTIONS = {"dynamodb:PutItem", "dynamodb:Query", "dynamodb:GetItem"}


def of_type(kind: str) -> dict[str, dict[str, Any]]:
    return {name: spec for name, spec in RESOURCES.items() if spec["Type"] == kind}


FUNCTIONS = of_type("AWS::Serverless::Function")
ALARMS = of_type("AWS::CloudWatch::Alarm")


def props(logical_id: str) -> dict[str, Any]:
    return dict(RESOURCES[logical_id].get("Properties", {}))


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def branches(value: Any) -> Iterator[Any]:
    """Both sides of an Fn::If (either may be deployed), without AWS::NoValue."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        _condition, yes, no = value["Fn::If"]
        yield from branches(yes)
        yield from branches(no)
    elif value != {"Ref": "AWS::NoValue"}:
        yield value


def statements() -> list[tuple[str, dict[str, Any]]]:
    """Every IAM statement in the template, with the logical id of the resource it belongs to."""
    found: list[tuple[str, dict[str, Any]]] = []

    def walk(node: Any, owner: str) -> None:
        if isinstance(node, dict):
            if "Statement" in node:
                for item in as_list(node["Statement"]):
                    found.extend((owner, s) for s in branches(item))
            for value in node.values():
                walk(value, owner)
        elif isinstance(node, list):
            for value in node:
                walk(value, owner)

    for name, spec in RESOURCES.items():
        walk(spec, name)
    return found


def mentions(value: Any, logical_id: str) -> bool:
    return re.search(rf"\b{logical_id}\b", json.dumps(value)) is not None


def sub_text(value: Any) -> str:
    """The template string of a `!Sub` (short or list form)."""
    arg = value["Fn::Sub"]
    return str(arg if isinstance(arg, str) else arg[0])


def function_timeout(logical_id: str) -> int:
    return int(props(logical_id).get("Timeout", GLOBAL_FUNCTION["Timeout"]))


def sqs_sources() -> list[tuple[str, str, dict[str, Any]]]:
    """(function, queue, event properties) of every SQS event source."""
    return [
        (name, event["Properties"]["Queue"]["Fn::GetAtt"][0], event["Properties"])
        for name in FUNCTIONS
        for event in props(name).get("Events", {}).values()
        if event["Type"] == "SQS"
    ]


# --- IAM ---------------------------------------------------------------------------------------------


def test_the_template_has_iam_statements_to_check():
    owners = {owner for owner, _ in statements()}
    assert set(FUNCTIONS) | {"ApprovalStateMachine"} <= owners


STATEMENTS = statements()


@pytest.mark.parametrize(
    ("owner", "statement"), STATEMENTS, ids=[f"{o}-{s.get('Sid', i)}" for i, (o, s) in enumerate(STATEMENTS)]
)
def test_no_statement_has_a_wildcard_action(owner, statement):
    assert "NotAction" not in statement, f"{owner}: NotAction grants everything else"
    actions = as_list(statement["Action"])
    assert actions
    for action in actions:
        assert isinstance(action, str), f"{owner}: {action!r}"
        assert "*" not in action, f"{owner} {statement.get('Sid')}: {action}"


def test_no_statement_grants_on_every_resource():
    for owner, statement in statements():
        if RESOURCES[owner]["Type"] == "AWS::KMS::Key":
            continue  # in a key policy, Resource "*" is the key itself (see the next test)
        assert "*" not in as_list(statement["Resource"]), f"{owner} {statement.get('Sid')}"


def test_audit_key_policies_delegate_to_the_account_only():
    keys = of_type("AWS::KMS::Key")
    assert set(keys) == {"AuditMacKey", "AuditSigningKey"}
    for name in keys:
        for statement in props(name)["KeyPolicy"]["Statement"]:
            assert statement["Resource"] == "*"
            assert sub_text(statement["Principal"]["AWS"]).endswith(":iam::${AWS::AccountId}:root"), name


# The sweeper writes no audit entry: it finds sessions and queues messages; AgentStep audits the takeover.
AUDITING = set(FUNCTIONS) - {"SweeperFunction"}


def test_functions_may_only_seal_with_the_mac_key_and_never_sign():
    on_kms = [
        (o, s)
        for o, s in statements()
        if o in FUNCTIONS and any(a.startswith("kms:") for a in as_list(s["Action"]))
    ]
    assert {o for o, _ in on_kms} == AUDITING
    for owner, statement in on_kms:
        assert as_list(statement["Action"]) == ["kms:GenerateMac"], owner
        assert statement["Resource"] == {"Fn::GetAtt": ["AuditMacKey", "Arn"]}, owner
    for owner, statement in statements():
        assert owner not in FUNCTIONS or not mentions(statement, "AuditSigningKey"), owner
    assert GLOBAL_ENV["AUDIT_MAC_KEY_ID"] == {"Ref": "AuditMacKey"}


def test_the_audit_table_is_append_only_for_every_function():
    on_audit = [(o, s) for o, s in statements() if mentions(s["Resource"], "AuditTable")]
    assert {o for o, _ in on_audit} == AUDITING
    for owner, statement in on_audit:
        actions = set(as_list(statement["Action"]))
        assert "dynamodb:PutItem" in actions, owner
        assert actions <= AUDIT_ACTIONS, f"{owner} may {sorted(actions - AUDIT_ACTIONS)} on the audit trail"
        assert not actions & {"dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}


def test_no_sam_policy_template_reaches_the_audit_table():
    for name in FUNCTIONS:
        for policy in props(name).get("Policies", []):
            if isinstance(policy, dict) and "Statement" not in policy:
                assert not mentions(policy, "AuditTable"), f"{name}: {policy}"


def test_secret_arns_match_one_secret_each():
    secret_statements = [
        s for _, s in statements() if any(a.startswith("secretsmanager:") for a in as_list(s["Action"]))
    ]
    # webhook, Slack (×2 functions), Anthropic, and one per backend that holds a credential
    assert len(secret_statements) == 7
    for statement in secret_statements:
        for resource in as_list(statement["Resource"]):
            arn = sub_text(resource)
            # Secrets Manager appends "-" and six random characters to a secret's name.
            assert arn.endswith("Name}-??????"), arn


def test_bedrock_is_limited_to_the_configured_model():
    (statement,) = [s for _, s in statements() if s.get("Sid") == "InvokeClaude"]
    assert as_list(statement["Action"]) == ["bedrock:InvokeModel"]
    arns = [sub_text(r) for r in as_list(statement["Resource"])]
    assert len(arns) == 2
    assert any(arn.endswith(":inference-profile/${BedrockModelId}") for arn in arns)
    assert any(arn.endswith("::foundation-model/anthropic.${Model}") for arn in arns)
    for arn in arns:
        for pseudo, value in {"Partition": "aws", "Region": "region", "AccountId": "account"}.items():
            arn = arn.replace("${AWS::" + pseudo + "}", value)
        _arn, partition, service, region, account, resource = arn.split(":", 5)
        assert region in {"*", "region"}, arn
        assert "*" not in partition + service + account + resource, arn  # the region is the only wildcard


@pytest.mark.parametrize(
    "model_id",
    [
        "us.anthropic.claude-sonnet-4-6",
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "anthropic.claude-3-5-haiku-20241022-v1:0",
    ],
)
def test_bedrock_model_ids_leave_the_foundation_model_after_anthropic(model_id):
    parameter = TEMPLATE["Parameters"]["BedrockModelId"]
    assert re.fullmatch(parameter["AllowedPattern"], model_id)
    assert model_id.split("anthropic.")[1].startswith("claude-")
    assert re.fullmatch(parameter["AllowedPattern"], parameter["Default"])


def test_the_anthropic_key_is_readable_only_with_the_anthropic_provider():
    policy = props("AgentStepFunction")["Policies"][0]["Statement"]
    (guarded,) = [s for s in policy if "Fn::If" in s and s["Fn::If"][1]["Sid"] == "AnthropicKey"]
    assert guarded["Fn::If"][0] == "UsesAnthropic"


# --- alarms ------------------------------------------------------------------------------------------


def test_every_alarm_notifies_the_alarm_topic():
    assert RESOURCES["AlarmTopic"]["Type"] == "AWS::SNS::Topic"
    assert ALARMS
    for name, spec in ALARMS.items():
        assert {"Ref": "AlarmTopic"} in spec["Properties"].get("AlarmActions", []), name
        for action in spec["Properties"].get("OKActions", []):
            assert action == {"Ref": "AlarmTopic"}, name


def test_the_email_subscription_exists_only_with_an_address():
    subscription = RESOURCES["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert TEMPLATE["Conditions"]["HasAlarmEmail"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]
    }
    assert TEMPLATE["Parameters"]["AlarmEmail"]["Default"] == ""


def alarms_on(namespace: str, metric: str) -> list[dict[str, Any]]:
    return [
        spec["Properties"]
        for spec in ALARMS.values()
        if spec["Properties"]["Namespace"] == namespace and spec["Properties"]["MetricName"] == metric
    ]


@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
def test_every_function_has_error_and_throttle_alarms(metric):
    watched = [a["Dimensions"] for a in alarms_on("AWS/Lambda", metric)]
    for name in FUNCTIONS:
        assert [{"Name": "FunctionName", "Value": {"Ref": name}}] in watched, name


@pytest.mark.parametrize("metric", ["ExecutionsFailed", "ExecutionsTimedOut"])
def test_the_approval_workflow_has_failure_alarms(metric):
    (alarm,) = alarms_on("AWS/States", metric)
    assert alarm["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": "ApprovalStateMachine"}}]


def test_every_dead_letter_queue_has_an_alarm():
    dlqs = {
        p["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for name in of_type("AWS::SQS::Queue")
        if "RedrivePolicy" in (p := props(name))
    }
    assert dlqs == {"AgentDeadLetterQueue", "NotifyDeadLetterQueue"}
    watched = [a["Dimensions"] for a in alarms_on("AWS/SQS", "ApproximateNumberOfMessagesVisible")]
    for dlq in dlqs:
        assert [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq, "QueueName"]}}] in watched, dlq


@pytest.mark.parametrize(("metric", "threshold"), [("SessionsStuck", 1), ("DailyBudgetUsedPercent", 90)])
def test_custom_metric_alarms_read_what_powertools_emits(metric, threshold):
    (alarm,) = alarms_on(GLOBAL_ENV["POWERTOOLS_METRICS_NAMESPACE"], metric)
    # Powertools Metrics adds the single dimension service=<POWERTOOLS_SERVICE_NAME>.
    assert alarm["Dimensions"] == [{"Name": "service", "Value": GLOBAL_ENV["POWERTOOLS_SERVICE_NAME"]}]
    assert alarm["Threshold"] == threshold
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


# --- logs --------------------------------------------------------------------------------------------


def test_log_retention_parameter_offers_the_cloudwatch_values():
    parameter = TEMPLATE["Parameters"]["LogRetentionDays"]
    assert parameter["AllowedValues"] == RETENTION_DAYS
    assert parameter["Default"] == 30


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_function_logs_to_its_own_group_with_retention(name):
    group = props(name)["LoggingConfig"]["LogGroup"]["Ref"]
    assert RESOURCES[group]["Type"] == "AWS::Logs::LogGroup"
    assert props(group)["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    others = [props(f)["LoggingConfig"]["LogGroup"] for f in FUNCTIONS if f != name]
    assert {"Ref": group} not in others


def test_http_api_access_log_keeps_no_bodies_headers_or_query_strings():
    settings = props("HttpApi")["AccessLogSettings"]
    group = settings["DestinationArn"]["Fn::GetAtt"]
    assert group[1] == "Arn"
    assert props(group[0])["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    fields = json.loads(settings["Format"])
    assert {"requestId", "status", "route"} <= set(fields)
    for value in fields.values():
        assert value.startswith("$context."), value
        assert not re.search(r"body|header|querystring|authorizer", value, re.I), value


# --- capacity, timeouts and retention ---------------------------------------------------------------


def test_public_functions_have_reserved_concurrency_parameters():
    public = [
        n for n in FUNCTIONS if any(e["Type"] == "HttpApi" for e in props(n).get("Events", {}).values())
    ]
    assert sorted(public) == ["IntakeFunction", "SlackInteractionFunction"]
    for name in public:
        reserved = props(name)["ReservedConcurrentExecutions"]
        values = list(branches(reserved))
        assert len(values) == 1 and values[0]["Ref"] in TEMPLATE["Parameters"], name
        assert TEMPLATE["Parameters"][values[0]["Ref"]]["Default"] > 0


def test_http_functions_cold_start_from_a_snapshot_unless_provisioned():
    """The HTTP functions publish a `live` alias (the HTTP API calls it) with SnapStart; SlackInteraction
    trades SnapStart for provisioned concurrency when SlackProvisionedConcurrency asks (never both)."""
    for name in ("IntakeFunction", "SlackInteractionFunction"):
        assert props(name)["AutoPublishAlias"] == "live", name
        assert {"ApplyOn": "PublishedVersions"} in list(branches(props(name)["SnapStart"])), name
    assert props("IntakeFunction")["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    snap = props("SlackInteractionFunction")["SnapStart"]["Fn::If"]
    provisioned = props("SlackInteractionFunction")["ProvisionedConcurrencyConfig"]["Fn::If"]
    assert snap[0] == provisioned[0] == "ProvisionsSlackInteraction"
    assert snap[1] == {"Ref": "AWS::NoValue"} and provisioned[2] == {"Ref": "AWS::NoValue"}
    assert provisioned[1] == {"ProvisionedConcurrentExecutions": {"Ref": "SlackProvisionedConcurrency"}}
    assert TEMPLATE["Conditions"]["ProvisionsSlackInteraction"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "SlackProvisionedConcurrency"}, 0]}]
    }
    assert TEMPLATE["Parameters"]["SlackProvisionedConcurrency"]["Default"] == 0
    # The asynchronous functions need no faster cold start and keep $LATEST (SnapStart bills Python).
    for name in ("AgentStepFunction", "NotifierFunction", "SweeperFunction"):
        assert "SnapStart" not in props(name) and "AutoPublishAlias" not in props(name), name


def test_the_layer_ships_bytecode():
    """Lambda mounts layers read-only: without .pyc files every cold start compiles the imports from source
    (bench/layer_size.py --bytecode weighs them); the layer's Makefile builds and compiles them."""
    assert RESOURCES["CommonLayer"]["Metadata"]["BuildMethod"] == "makefile"
    makefile = (TEMPLATE_PATH.parent / props("CommonLayer")["ContentUri"] / "Makefile").read_text()
    assert "build-CommonLayer:" in makefile
    assert "-r requirements.txt" in makefile and "--require-hashes" in makefile
    assert "compileall" in makefile and "--invalidation-mode unchecked-hash" in makefile


def test_agent_step_timeouts_agree():
    timeout = function_timeout("AgentStepFunction")
    env = props("AgentStepFunction")["Environment"]["Variables"]
    model, turns = float(env["MODEL_TIMEOUT_SECONDS"]), int(env["MAX_TURNS"])
    # A session whose model calls each answer on the first attempt fits in one invocation ...
    assert turns * model + SESSION_OVERHEAD_SECONDS <= timeout
    # ... and so does a model outage: every attempt of one call times out, then the session is handed off.
    assert (MODEL_SDK_RETRIES + 1) * model + MODEL_SDK_RETRIES * MODEL_SDK_MAX_BACKOFF <= timeout


def test_the_lease_outlives_an_invocation_and_runs_out_before_a_redelivery():
    env = props("AgentStepFunction")["Environment"]["Variables"]
    lease, timeout = float(env["LEASE_SECONDS"]), function_timeout("AgentStepFunction")
    assert lease >= timeout + 60  # a live run never loses its lease
    assert props("AgentQueue")["VisibilityTimeout"] >= lease  # a redelivery finds it expired
    (event,) = props("AgentStepFunction")["Events"].values()
    assert event["Properties"]["BatchSize"] == 1  # one session's bound is the invocation's


def test_the_sweeper_reads_only_the_lease_index_and_the_budget_and_runs_every_five_minutes():
    (schedule,) = props("SweeperFunction")["Events"].values()
    assert schedule["Properties"]["ScheduleExpression"] == "rate(5 minutes)"
    (index,) = props("SessionsTable")["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "ByLease"
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["state", "lease_until"]
    actions = [s["Action"] for s in props("SweeperFunction")["Policies"][0]["Statement"]]
    assert actions == [["dynamodb:Query"], ["sqs:SendMessage"], ["dynamodb:GetItem"]]


@pytest.mark.parametrize(("function", "queue", "event"), sqs_sources(), ids=[q for _, q, _ in sqs_sources()])
def test_queue_visibility_covers_six_function_timeouts(function, queue, event):
    visibility = props(queue)["VisibilityTimeout"]
    timeout = function_timeout(function)
    assert visibility >= 6 * timeout
    assert visibility >= timeout + event.get("MaximumBatchingWindowInSeconds", 0)
    redrive = props(queue)["RedrivePolicy"]
    retention = props(queue).get("MessageRetentionPeriod", 345600)
    # Every receive can run out its visibility timeout before the message reaches the DLQ ...
    assert retention >= redrive["maxReceiveCount"] * visibility
    # ... and the DLQ keeps messages longer than the queue (the enqueue time carries over).
    assert props(redrive["deadLetterTargetArn"]["Fn::GetAtt"][0])["MessageRetentionPeriod"] >= retention
    assert "ScalingConfig" in event, f"{function}: concurrency is bounded by the event source"


@pytest.mark.parametrize("table", ["SessionsTable", "AuditTable", "BudgetsTable"])
def test_tables_with_the_trail_and_sessions_are_retained(table):
    assert RESOURCES[table]["DeletionPolicy"] == "Retain"
    assert RESOURCES[table]["UpdateReplacePolicy"] == "Retain"


def test_every_checkov_skip_gives_a_reason():
    skips = re.findall(r"#\s*checkov:skip=([A-Z0-9_]+)(.*)", TEMPLATE_PATH.read_text())
    assert skips
    for check, rest in skips:
        reason = rest.lstrip(":").strip()
        assert len(reason) >= 20, f"{check} is skipped without a reason"


BACKEND_GRANTS = {
    # (parameters) → the Sids AgentStep gets beyond its core ones
    "embedded": ({}, {"EmbeddedSystems"}),
    "all real": (
        {
            "TicketsBackend": "zendesk",
            "CrmBackend": "customer_api",
            "BillingBackend": "stripe",
            "AccountsBackend": "cognito",
            "KnowledgeBackend": "zendesk",
            "CognitoUserPoolId": "us-east-1_Example1",
        },
        {"ZendeskToken", "CustomerApiToken", "StripeKey", "CognitoAccounts"},
    ),
    "stripe only": ({"BillingBackend": "stripe"}, {"EmbeddedSystems", "StripeKey"}),
    "cognito by e-mail": (
        {
            "AccountsBackend": "cognito",
            "CognitoUserPoolId": "us-east-1_Example1",
            "CognitoUserLookup": "email",
        },
        {"EmbeddedSystems", "CognitoAccounts", "CognitoLookupByEmail"},
    ),
}
CORE_AGENT_SIDS = {
    "SessionsAndApprovals",
    "AuditAppendOnly",
    "AuditSeal",
    "StartApproval",
    "HandoffNotices",
    "AnthropicKey",
}


@pytest.mark.parametrize("choice", list(BACKEND_GRANTS))
def test_agent_step_gets_only_what_the_chosen_backends_need(choice):
    from support_agent_local.template import Resolver

    parameters, expected = BACKEND_GRANTS[choice]
    resolver = Resolver(load_template(), dict(parameters))

    def chosen(value: Any) -> Any:
        """The statements with every Fn::If decided for these parameters (other intrinsics left as they are)."""
        if isinstance(value, list):
            return [v for v in (chosen(x) for x in value) if v != {"Ref": "AWS::NoValue"}]
        if isinstance(value, dict) and set(value) == {"Fn::If"}:
            name, yes, no = value["Fn::If"]
            return chosen(yes if resolver.condition(name) else no)
        return value

    statements = [s for p in props("AgentStepFunction")["Policies"] for s in chosen(p["Statement"])]
    assert {s["Sid"] for s in statements} - CORE_AGENT_SIDS == expected
    env = props("AgentStepFunction")["Environment"]["Variables"]
    assert env["BILLING_BACKEND"] == {"Ref": "BillingBackend"}
