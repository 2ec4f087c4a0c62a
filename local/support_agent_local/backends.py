"""The outside systems for a local run with real backends: Zendesk as a stand-in over HTTP, Stripe as
localstripe (the real SDK over HTTP), the company's customer API served from the sample data, and Amazon
Cognito on moto. The agent reaches each through the adapter a deployment uses, chosen by the same template
parameters and secrets (`TicketsBackend=zendesk`, …), so only the addresses differ from production.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from support_agent_local.customer_api_server import CustomerApiServer
from support_agent_local.fake_zendesk import FakeZendesk

if TYPE_CHECKING:
    from support_agent_local.emulator import EmbeddedAws
    from support_agent_local.stripe_emulator import LocalStripe

SAMPLE_DATA = (
    Path(__file__).resolve().parents[2] / "layers" / "common" / "support_agent" / "data" / "sample_data.json"
)
HUMANS_GROUP = 360000000001


def cognito_pool(client: Any, customers: list[dict[str, Any]], name: str = "support-agent-customers") -> str:
    """A user pool shaped like a deployment's (custom attributes for notifications and the reset marker),
    with one confirmed user per customer whose username is the customer id."""
    pool = client.create_user_pool(
        PoolName=name,
        Schema=[
            {"Name": "notifications", "AttributeDataType": "String", "Mutable": True},
            {"Name": "support_reset", "AttributeDataType": "String", "Mutable": True},
        ],
    )["UserPool"]["Id"]
    for customer in customers:
        cognito_user(client, pool, customer["id"], customer)
    return str(pool)


def cognito_user(
    client: Any,
    pool: str,
    username: str,
    customer: dict[str, Any],
    confirmed: bool = True,
    verified: bool = True,
) -> None:
    """One customer's user (confirmed: a permanent password, as after sign-up)."""
    client.admin_create_user(
        UserPoolId=pool,
        Username=username,
        MessageAction="SUPPRESS",
        UserAttributes=[
            {"Name": "email", "Value": customer["email"]},
            {"Name": "email_verified", "Value": "true" if verified else "false"},
            {"Name": "name", "Value": customer["name"]},
            {"Name": "custom:notifications", "Value": json.dumps(customer.get("notifications", {}))},
        ],
    )
    if confirmed:
        client.admin_set_user_password(
            UserPoolId=pool, Username=username, Password="Local-Only-Pa55word!", Permanent=True
        )


@dataclass
class RealBackends:
    """Start the stand-ins and emulators, then `attach` them to a running EmbeddedAws."""

    data: Path = SAMPLE_DATA
    zendesk: FakeZendesk = field(default_factory=FakeZendesk)
    customer_api: CustomerApiServer = field(default_factory=CustomerApiServer)
    stripe: LocalStripe | None = None
    pool_id: str = ""
    zendesk_users: dict[str, str] = field(default_factory=dict)  # customer id → Zendesk user id

    def start(self) -> RealBackends:
        from support_agent_local.stripe_emulator import LocalStripe

        self.zendesk.start()
        self.customer_api.start()
        self.stripe = LocalStripe().start()
        return self

    def stop(self) -> None:
        if self.stripe is not None:
            self.stripe.stop()
        self.customer_api.stop()
        self.zendesk.stop()

    def __enter__(self) -> RealBackends:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def attach(self, stack: EmbeddedAws) -> None:
        """Seed every system with the sample customers and point the stack's functions at them."""
        import boto3
        import stripe

        from support_agent_local import stripe_seed

        assert self.stripe is not None, "start() first"
        customers = json.loads(self.data.read_text(encoding="utf-8"))["customers"]
        for c in customers:
            self.zendesk_users[c["id"]] = self.zendesk.create_user(c["name"], c["email"], external_id=c["id"])
        stripe_seed.seed(
            stripe.StripeClient(self.stripe.api_key, base_addresses={"api": self.stripe.url}), self.data
        )
        self.pool_id = cognito_pool(boto3.client("cognito-idp"), customers)
        stack.use_parameters(
            TicketsBackend="zendesk",
            CrmBackend="customer_api",
            BillingBackend="stripe",
            AccountsBackend="cognito",
            CognitoUserPoolId=self.pool_id,
        )
        stack.put_secret(
            "ZendeskSecretName",
            {
                "base_url": self.zendesk.url,
                "email": self.zendesk.email,
                "api_token": self.zendesk.token,
                "group_ids": {"tier-2-humans": HUMANS_GROUP},
                "default_group_id": HUMANS_GROUP,
            },
        )
        stack.put_secret(
            "CustomerApiSecretName", {"base_url": self.customer_api.url, "token": self.customer_api.token}
        )
        stack.put_secret("StripeSecretName", {"api_key": self.stripe.api_key})
        stack.environment["STRIPE_API_BASE"] = self.stripe.url

    def open_ticket(self, customer_id: str, subject: str, body: str) -> dict[str, Any]:
        """A ticket the customer opens in Zendesk, and the trigger body Zendesk would send for it."""
        ticket_id = self.zendesk.create_ticket(subject, body, self.zendesk_users[customer_id])
        requester = self.zendesk.users[int(self.zendesk_users[customer_id])]
        return {
            "ticket": {
                "id": ticket_id,
                "subject": subject,
                "description": body,
                "url": f"{self.zendesk.url}/agent/tickets/{ticket_id}",
                "tags": "",
                "requester": {
                    "id": str(requester["id"]),
                    "email": requester["email"],
                    "name": requester["name"],
                    "external_id": customer_id,
                },
            }
        }
