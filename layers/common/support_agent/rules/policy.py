"""The policy file: what the agent may do, on what, and what needs a human first.

A rule reads `ACTION on RESOURCE` (optionally prefixed with `deny`), either as a plain string or as a
one-key mapping whose value holds options. Decisions: an explicit deny beats everything, then a rule
that requires approval beats a plain allow (the stricter reading wins), and nothing matched is a deny.

In a resource, `*` matches exactly one path segment, and `{requester}` (a whole segment) matches only the
customer record the session bound to the ticket's verified requester: `crm:read on customers/{requester}`
lets the agent read the requester's own record and no other. Without a bound requester such a rule
matches nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ACTION_RE = re.compile(r"^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*$")
RESOURCE_RE = re.compile(r"^[A-Za-z0-9_.@*#:+{}-]+(/[A-Za-z0-9_.@*#:+{}-]+)*$")
REQUESTER = "{requester}"  # the one resource variable: the session's bound customer record
# What a bound customer id may look like to fill `{requester}`: one plain path segment, never `.` or `..`.
BOUND_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$")
RULE_RE = re.compile(r"^\s*(?:(?P<effect>allow|deny)\s+)?(?P<action>\S+)\s+on\s+(?P<resource>\S+)\s*$")
CHANNEL_RE = re.compile(r"^slack:[#@]?[A-Za-z0-9._-]+$")


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the file, the line and the reason."""

    def __init__(self, file: str, line: int | None, reason: str) -> None:
        self.file, self.line, self.reason = file, line, reason
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {reason}")


class Effect(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    REQUIRES_APPROVAL = "requires_approval"


class RuleOptions(BaseModel):
    """Options a rule may carry; anything else is an error."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    effect: Literal["allow", "deny"] = "allow"
    requires_approval: bool = False
    approval_channel: str | None = None
    description: str | None = None

    @field_validator("approval_channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        if value is not None and not CHANNEL_RE.match(value):
            raise ValueError("approval_channel must look like slack:#channel-name")
        return value


@dataclass(frozen=True)
class Rule:
    """One parsed rule, with the text and line it came from (what `explain` prints)."""

    effect: Literal["allow", "deny"]
    action: str
    resource: str
    requires_approval: bool
    approval_channel: str | None
    text: str
    line: int

    @property
    def binds_requester(self) -> bool:
        """True when the rule's resource names `{requester}`."""
        return REQUESTER in self.resource

    def matches(self, action: str, resource: str, requester: str | None = None) -> bool:
        """True when this rule covers the action on the resource (`{requester}` is only `requester`)."""
        if not _action_matches(self.action, action):
            return False
        found = _resource_regex(self.resource).match(resource)
        if found is None:
            return False
        if not self.binds_requester:
            return True
        return bound_id(requester) is not None and all(value == requester for value in found.groups())


@dataclass(frozen=True)
class Verdict:
    """The answer of `authorize`: the effect, the rule that decided (None: default deny), the channel."""

    effect: Effect
    rule: Rule | None
    approval_channel: str | None = None
    requester: str | None = None  # what `{requester}` stood for, when the deciding rule names it

    @property
    def allowed(self) -> bool:
        return self.effect is Effect.ALLOW

    def describe(self) -> str:
        """One line for people and for the audit trail."""
        why = (
            f"rule at line {self.rule.line}: {self.rule.text}"
            if self.rule
            else "no rule matched (default deny)"
        )
        if self.rule is not None and self.rule.binds_requester:
            why += f" ({REQUESTER} = {self.requester})"
        channel = f" via {self.approval_channel}" if self.approval_channel else ""
        return f"{self.effect.value}{channel} — {why}"


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    max_tokens_per_session: int = Field(gt=0)
    max_sessions_per_day: int = Field(gt=0)


class Approvers(BaseModel):
    """Who may decide requests posted to one approval channel."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    users: list[str] = Field(default_factory=list)
    usergroups: list[str] = Field(default_factory=list)


class TriageCategory(BaseModel):
    """A guard category: any matching pattern routes the ticket to a human."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    description: str = ""
    patterns: list[str] = Field(min_length=1)
    unless: list[str] = Field(default_factory=list)

    @field_validator("patterns", "unless")
    @classmethod
    def _compiles(cls, values: list[str]) -> list[str]:
        for pattern in values:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {exc}") from exc
        return values


class TriagePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    categories: dict[str, TriageCategory] = Field(default_factory=dict)
    min_confidence: float = Field(default=0.7, ge=0, le=1)


class PolicyDocument(BaseModel):
    """The whole file, as written (rules still raw; `Policy` holds them parsed)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    project: str
    agent: str
    timezone: str = "UTC"
    policies: list[str | dict[str, RuleOptions | None]] = Field(min_length=1)
    budget: Budget
    approvers: dict[str, Approvers] = Field(default_factory=dict)
    handoff_channel: str | None = None
    triage: TriagePolicy = Field(default_factory=TriagePolicy)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


class Policy:
    """A loaded policy: the rules, the budget and the rest of the document."""

    def __init__(self, document: PolicyDocument, rules: list[Rule], source: str) -> None:
        self.document = document
        self.rules = rules
        self.source = source

    @property
    def budget(self) -> Budget:
        return self.document.budget

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.document.timezone)

    def authorize(self, action: str, resource: str, *, requester: str | None = None) -> Verdict:
        """Decide `action` on `resource`: explicit deny > requires approval > allow > default deny.

        `requester` is the customer id the session bound to the ticket's verified requester (None: no
        record is bound); rules naming `{requester}` match that one id and nothing else.
        """
        matching = [rule for rule in self.rules if rule.matches(action, resource, requester)]
        bound = bound_id(requester)
        for rule in matching:
            if rule.effect == "deny":
                return Verdict(Effect.DENY, rule, requester=bound)
        for rule in matching:
            if rule.requires_approval:
                return Verdict(Effect.REQUIRES_APPROVAL, rule, rule.approval_channel, bound)
        if matching:
            return Verdict(Effect.ALLOW, matching[0], requester=bound)
        return Verdict(Effect.DENY, None)

    def binds_requester(self, action: str) -> bool:
        """True when some rule for this action names `{requester}` (what `explain` hints at)."""
        return any(rule.binds_requester and _action_matches(rule.action, action) for rule in self.rules)

    def could_allow(self, action: str) -> bool:
        """True when some allow rule names this action (so a tool for it is worth offering at all)."""
        return any(rule.effect == "allow" and _action_matches(rule.action, action) for rule in self.rules)

    def handoff_channel(self) -> str | None:
        """Where handoffs are announced: `handoff_channel`, else the first approval channel of the rules."""
        if self.document.handoff_channel:
            return self.document.handoff_channel
        return next((r.approval_channel for r in self.rules if r.approval_channel), None)

    def approvers_for(self, channel: str) -> Approvers:
        """Approvers configured for an approval channel (none configured: nobody may approve)."""
        return self.document.approvers.get(channel, Approvers())


def _action_matches(pattern: str, action: str) -> bool:
    if pattern == action:
        return True
    service, _, verb = pattern.partition(":")
    return verb == "*" and action.startswith(service + ":")


def bound_id(requester: str | None) -> str | None:
    """`requester` when it can stand for `{requester}` (one plain path segment), else None."""
    return requester if requester is not None and BOUND_ID_RE.match(requester) else None


@lru_cache(maxsize=512)
def _resource_regex(pattern: str) -> re.Pattern[str]:
    """`*` is one segment; `{requester}` is one captured segment the rule compares with the bound id."""
    parts = []
    for segment in pattern.split("/"):
        if segment == "*":
            parts.append("[^/]+")
        elif segment == REQUESTER:
            parts.append("([^/]+)")
        else:
            parts.append("[^/]*".join(re.escape(piece) for piece in segment.split("*")))
    return re.compile("^" + "/".join(parts) + "$")


# --- loading -------------------------------------------------------------------------------------------


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the line of every mapping key and sequence item (per load, on itself)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.lines: dict[int, dict[Any, int]] = {}


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    lines: dict[Any, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise PolicyError("", key_node.start_mark.line + 1, f"duplicate key {key!r}")
        result[key] = loader.construct_object(value_node, deep=True)
        lines[key] = key_node.start_mark.line + 1
    loader.lines[id(result)] = lines
    return result


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> list[Any]:
    items = [loader.construct_object(child, deep=True) for child in node.value]
    loader.lines[id(items)] = {i: child.start_mark.line + 1 for i, child in enumerate(node.value)}
    return items


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


@dataclass(frozen=True)
class _Located:
    """Parsed YAML with the line of every key and item (keyed by the containers' ids while they live)."""

    data: Any
    lines: dict[int, dict[Any, int]]

    def line_of(self, loc: tuple[Any, ...]) -> int | None:
        """Line of the deepest YAML node on the path `loc` (pydantic's error location)."""
        line, node = None, self.data
        for key in loc:
            lines = self.lines.get(id(node), {})
            if key not in lines or not isinstance(node, dict | list):
                break
            line = lines[key]
            node = node[key]
        return line


def _load_yaml(text: str) -> _Located:
    loader = _LineLoader(text)
    try:
        return _Located(loader.get_single_data(), loader.lines)
    finally:
        loader.dispose()


def parse_rule(entry: Any, line: int, file: str) -> Rule:
    """Parse one entry of `policies:` into a Rule, or fail naming the line."""
    options = RuleOptions()
    if isinstance(entry, dict):
        if len(entry) != 1:
            raise PolicyError(
                file, line, "a rule with options is one `ACTION on RESOURCE:` key with its options"
            )
        text, raw = next(iter(entry.items()))
        if raw is not None and not isinstance(raw, dict):
            raise PolicyError(file, line, f"options of {text!r} must be a mapping")
        try:
            options = RuleOptions.model_validate(raw or {})
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"])
            raise PolicyError(file, line, f"{text}: option {key!r}: {err['msg']}") from None
    elif isinstance(entry, str):
        text = entry
    else:
        raise PolicyError(
            file, line, "a rule must be a string `ACTION on RESOURCE` or a mapping with options"
        )
    match = RULE_RE.match(str(text))
    if not match:
        raise PolicyError(file, line, f"rule {text!r} is not of the form `ACTION on RESOURCE`")
    action, resource = match["action"], match["resource"]
    if not ACTION_RE.match(action) and not re.match(r"^[a-z][a-z0-9_]*:\*$", action):
        raise PolicyError(file, line, f"bad action name {action!r}: expected service:verb, like crm:read")
    if not RESOURCE_RE.match(resource):
        raise PolicyError(file, line, f"bad resource {resource!r}: expected a path like customers/*")
    for segment in resource.split("/"):
        if ("{" in segment or "}" in segment) and segment != REQUESTER:
            raise PolicyError(
                file,
                line,
                f"bad resource {resource!r}: the only variable is {REQUESTER}, as a whole path segment",
            )
    effect = match["effect"] or options.effect
    if match["effect"] and options.effect != "allow" and options.effect != match["effect"]:
        raise PolicyError(
            file, line, f"rule {text!r} says {match['effect']} but its options say {options.effect}"
        )
    if options.requires_approval and effect == "deny":
        raise PolicyError(file, line, "a deny rule cannot require approval")
    if options.requires_approval and not options.approval_channel:
        raise PolicyError(file, line, f"{text}: requires_approval needs an approval_channel")
    if options.approval_channel and not options.requires_approval:
        raise PolicyError(
            file, line, f"{text}: approval_channel is only meaningful with requires_approval: true"
        )
    return Rule(
        effect="deny" if effect == "deny" else "allow",
        action=action,
        resource=resource,
        requires_approval=options.requires_approval,
        approval_channel=options.approval_channel,
        text=str(text).strip(),
        line=line,
    )


def parse_policy(text: str, file: str = "<policy>") -> Policy:
    """Parse and validate policy YAML text; raises PolicyError naming the line on any problem."""
    try:
        located = _load_yaml(text)
    except PolicyError as exc:
        raise PolicyError(file, exc.line, exc.reason) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise PolicyError(file, mark.line + 1 if mark else None, f"not valid YAML: {exc}") from None
    raw = located.data
    if not isinstance(raw, dict):
        raise PolicyError(
            file, 1, "the policy file must be a mapping with project, agent, policies and budget"
        )
    try:
        document = PolicyDocument.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            reason = f"unknown key {loc[-1]!r} under {'.'.join(map(str, loc[:-1])) or 'the top level'}"
        elif err["type"] == "missing":
            reason = f"missing required key {'.'.join(map(str, loc))!r}"
        else:
            reason = f"{'.'.join(map(str, loc))}: {err['msg']}"
        if loc and loc[0] == "policies" and len(loc) > 1:
            parse_rule(raw["policies"][loc[1]], located.line_of(loc[:2]) or 0, file)  # precise rule error
        raise PolicyError(file, located.line_of(loc), reason) from None
    rules = [
        parse_rule(entry, located.line_of(("policies", i)) or 0, file)
        for i, entry in enumerate(raw["policies"])
    ]
    return Policy(document, rules, file)


def load_policy(path: str | Path) -> Policy:
    """Load and validate a policy file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(str(path), None, f"cannot read the policy file: {exc.strerror}") from None
    return parse_policy(text, str(path))


@lru_cache(maxsize=8)
def cached_policy(path: str) -> Policy:
    """Policy loaded once per process per path (the file ships with the layer and does not change)."""
    return load_policy(path)
