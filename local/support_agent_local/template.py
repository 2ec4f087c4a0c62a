"""Read template.yaml the way CloudFormation would: intrinsic functions kept as data, then resolved."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = PROJECT_ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns `!Ref X`, `!GetAtt A.B`, `!Sub …` into their long JSON forms."""


def _intrinsic(loader: _CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """template.yaml as a dict with intrinsics in their `{"Ref": …}` / `{"Fn::…": …}` form."""
    data = yaml.load(path.read_text(), Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a CloudFormation template")
    return data


def samconfig_parameters(env: str = "default", path: Path | None = None) -> dict[str, str]:
    """parameter_overrides of samconfig.toml's deploy section for `env`."""
    path = path or PROJECT_ROOT / "samconfig.toml"
    if not path.exists():
        return {}
    config = tomllib.loads(path.read_text())
    raw = config.get(env, {}).get("deploy", {}).get("parameters", {}).get("parameter_overrides", "")
    if isinstance(raw, list):
        raw = " ".join(raw)
    return {m[1]: m[2] if m[2] is not None else m[3] for m in re.finditer(r'(\w+)=(?:"([^"]*)"|(\S+))', raw)}


@dataclass
class Resolver:
    """Resolves intrinsics against parameters and the physical ids of resources already created."""

    template: dict[str, Any]
    parameters: dict[str, str] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)
    pseudo: dict[str, str] = field(
        default_factory=lambda: {
            "AWS::Region": "us-east-1",
            "AWS::AccountId": "123456789012",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": "support-agent-local",
        }
    )

    def __post_init__(self) -> None:
        for name, spec in self.template.get("Parameters", {}).items():
            if name not in self.parameters and "Default" in spec:
                self.parameters[name] = str(spec["Default"])

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template.get("Conditions", {})[name]))

    def resolve(self, value: Any) -> Any:
        """Value with every intrinsic function evaluated."""
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            handler = _INTRINSICS.get(key)
            if handler is not None:
                return handler(self, arg)
        return {k: self.resolve(v) for k, v in value.items()}

    def ref(self, name: str) -> str:
        if name in self.parameters:
            return self.parameters[name]
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.refs:
            return self.refs[name]
        raise KeyError(f"!Ref {name}: no parameter or provisioned resource of that name")

    def get_att(self, resource: str, attribute: str) -> str:
        try:
            return self.attributes[(resource, attribute)]
        except KeyError:
            raise KeyError(f"!GetAtt {resource}.{attribute} is not available locally") from None

    def sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def replace(m: re.Match[str]) -> str:
            name = m[1]
            if name in variables:
                return str(variables[name])
            if "." in name:
                res, att = name.split(".", 1)
                return self.get_att(res, att)
            return self.ref(name)

        return re.sub(r"\$\{([^}!]+)\}", replace, text)


def _if(r: Resolver, arg: list[Any]) -> Any:
    return r.resolve(arg[1] if r.condition(arg[0]) else arg[2])


_INTRINSICS: dict[str, Any] = {
    "Ref": lambda r, a: r.ref(a),
    "Fn::GetAtt": lambda r, a: r.get_att(*(a.split(".", 1) if isinstance(a, str) else a)),
    "Fn::Sub": lambda r, a: r.sub(a),
    "Fn::If": _if,
    "Fn::Equals": lambda r, a: r.resolve(a[0]) == r.resolve(a[1]),
    "Fn::Not": lambda r, a: not r.resolve(a[0]),
    "Fn::Or": lambda r, a: any(r.resolve(x) for x in a),
    "Fn::And": lambda r, a: all(r.resolve(x) for x in a),
    "Fn::Join": lambda r, a: str(a[0]).join(str(x) for x in r.resolve(a[1])),
    "Fn::Select": lambda r, a: r.resolve(a[1])[int(a[0])],
    "Condition": lambda r, a: r.condition(a),
}
