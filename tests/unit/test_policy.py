from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from support_agent.rules.policy import Effect, PolicyError, load_policy, parse_policy

ROOT = Path(__file__).resolve().parents[2]


def doc(rules: str, extra: str = "") -> str:
    """A valid policy document around `rules` (YAML list items), line 4 being the first rule."""
    body = textwrap.indent(textwrap.dedent(rules).strip("\n"), "  ")
    budget = "budget:\n  max_tokens_per_session: 1000\n  max_sessions_per_day: 10\n"
    return f"project: p\nagent: a\npolicies:\n{body}\n{budget}{textwrap.dedent(extra)}"


@pytest.fixture(scope="module")
def seed():
    return load_policy(ROOT / "policies" / "acme-support.yaml")


@pytest.mark.parametrize(
    ("action", "resource", "effect"),
    [
        ("tickets:read", "queue/tier-1", Effect.ALLOW),
        ("tickets:read", "queue/tier-2", Effect.DENY),
        ("crm:read", "customers/cus_1", Effect.ALLOW),
        ("crm:read", "customers/cus_1/secrets", Effect.DENY),  # * is one segment only
        ("crm:read", "customers/", Effect.DENY),  # and never empty
        ("crm:update", "tickets/T-1/notes", Effect.ALLOW),
        ("crm:update", "tickets/T-1/assignee", Effect.DENY),
        ("billing:refund", "customers/cus_1", Effect.REQUIRES_APPROVAL),
        ("crm:delete", "customers/cus_1", Effect.REQUIRES_APPROVAL),
        ("accounts:update", "customers/cus_1/profile", Effect.ALLOW),
        ("accounts:update", "customers/cus_1/email", Effect.DENY),
        ("billing:charge", "customers/cus_1", Effect.DENY),
    ],
)
def test_seed_policy_decisions(seed, action, resource, effect):
    # The customer rules name {requester}: here the requester is bound to cus_1.
    assert seed.authorize(action, resource, requester="cus_1").effect is effect


def test_default_deny_names_no_rule(seed):
    decision = seed.authorize("billing:charge", "customers/c")
    assert decision.rule is None
    assert "default deny" in decision.describe()


def test_approval_carries_channel_and_rule(seed):
    decision = seed.authorize("billing:refund", "customers/c1", requester="c1")
    assert decision.approval_channel == "slack:#support-escalations"
    assert decision.rule is not None and decision.rule.text == "billing:refund on customers/{requester}"
    assert decision.rule.line == 14
    assert decision.describe().endswith("({requester} = c1)")


def test_explicit_deny_beats_allow_in_any_order():
    for rules in (
        "- crm:read on customers/*\n- deny crm:read on customers/vip",
        "- deny crm:read on customers/vip\n- crm:read on customers/*",
    ):
        policy = parse_policy(doc(rules))
        assert policy.authorize("crm:read", "customers/vip").effect is Effect.DENY
        assert policy.authorize("crm:read", "customers/other").effect is Effect.ALLOW


def test_deny_via_option_and_approval_beats_allow():
    policy = parse_policy(
        doc(
            """\
            - billing:refund on customers/*
            - billing:refund on customers/*:
                requires_approval: true
                approval_channel: slack:#esc
            - crm:read on customers/*:
                effect: deny
            """
        )
    )
    assert policy.authorize("billing:refund", "customers/x").effect is Effect.REQUIRES_APPROVAL
    assert policy.authorize("crm:read", "customers/x").effect is Effect.DENY


def test_wildcard_inside_segment():
    policy = parse_policy(doc("- crm:read on customers/vip-*"))
    assert policy.authorize("crm:read", "customers/vip-42").allowed
    assert not policy.authorize("crm:read", "customers/std-42").allowed


def test_could_allow(seed):
    assert seed.could_allow("billing:refund")
    assert not seed.could_allow("billing:charge")


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (doc("- crm:read on customers/*", "colour: red\n"), 8, "unknown key 'colour'"),
        (doc("- crm:read on customers/*\n- crmread on customers/*"), 5, "bad action name 'crmread'"),
        (doc("- crm:read customers/*"), 4, "not of the form"),
        (
            doc("- crm:read on customers/*\n- crm:delete on customers/*:\n    requires_approval: true"),
            5,
            "needs an approval_channel",
        ),
        (
            doc("- crm:delete on customers/*:\n    requires_approval: yes\n    approval_chanel: slack:#x"),
            4,
            "approval_chanel",
        ),
        (
            doc("- crm:read on customers/*").replace("max_sessions_per_day: 10", "max_sessions_per_day: -1"),
            7,
            "greater than 0",
        ),
        (
            doc("- crm:read on customers/*").replace("project: p\n", ""),
            None,
            "missing required key 'project'",
        ),
        ("project: [unclosed\n", 2, "not valid YAML"),
    ],
)
def test_bad_files_name_line_and_reason(text, line, fragment):
    with pytest.raises(PolicyError) as err:
        parse_policy(text, "bad.yaml")
    assert fragment in err.value.reason
    assert err.value.line == line
    assert str(err.value).startswith("bad.yaml")


def test_missing_file_is_a_policy_error(tmp_path):
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "nope.yaml")
