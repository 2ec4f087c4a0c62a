"""Secrets from AWS Secrets Manager through Powertools parameters (cached while the Lambda is warm)."""

from __future__ import annotations

from typing import Any, Protocol


class SecretStore(Protocol):
    def get_json(self, name: str) -> dict[str, Any]:
        """The secret `name`, a JSON object."""
        ...


class SecretsManagerStore:
    """SecretStore over Secrets Manager; values are cached for `max_age` seconds."""

    def __init__(self, max_age: int = 300) -> None:
        self.max_age = max_age

    def get_json(self, name: str) -> dict[str, Any]:
        from aws_lambda_powertools.utilities import parameters

        value = parameters.get_secret(name, transform="json", max_age=self.max_age)
        if not isinstance(value, dict):
            raise ValueError(f"secret {name} must be a JSON object")
        return value
