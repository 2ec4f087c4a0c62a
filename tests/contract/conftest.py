"""Backends for the contract suites: each port's embedded adapter (on moto DynamoDB, in a table shaped as
template.yaml declares it) and its real adapter on an emulator (Stripe: the SDK over HTTP to localstripe;
Cognito: boto3 on moto's cognito-idp), both seeded from the same sample data.

To keep the suites fast, moto runs once per test module and each test gets a new table and user pool,
seeded by the adapters' own seed functions with the customers the contracts use (plus one billed in yen).
The helpdesk and CRM suites share one emulated stack per module instead (`shared_stack`): their tests only
read and write the embedded table, each on tickets of their own.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import boto3
import pytest
import stripe
from support_agent import aws
from support_agent.adapters import embedded
from support_agent.adapters.cognito_accounts import CognitoAccounts
from support_agent.adapters.embedded import SAMPLE_DATA, EmbeddedAccounts, EmbeddedBilling
from support_agent.adapters.ports import Accounts, Billing
from support_agent.adapters.stripe_billing import StripeBilling
from support_agent.models import Customer, Invoice
from support_agent_local import stripe_seed
from support_agent_local.backends import cognito_pool, cognito_user
from support_agent_local.emulator import EmbeddedAws
from support_agent_local.stripe_emulator import LocalStripe
from support_agent_local.template import load_template

SAMPLE = json.loads(SAMPLE_DATA.read_text(encoding="utf-8"))
USED = {"cus_jane", "cus_marco"}

# One more customer, billed in a zero-decimal currency: amounts are whole yen, in Stripe and in our models.
KENJI = {
    "id": "cus_kenji",
    "name": "Kenji Sato",
    "email": "kenji.sato@example.jp",
    "plan": "Pro",
    "signup_date": "2025-04-01",
    "lifetime_value_cents": 60000,
    "locale": "ja",
    "notifications": {"email": True, "sms": False, "digest": False},
}
KENJI_INVOICE = {
    "id": "in_kenji_2026_11",
    "customer_id": "cus_kenji",
    "period": "2026-11",
    "description": "Pro plan, November 2026",
    "amount_cents": 5000,  # ¥5,000
    "currency": "jpy",
    "status": "paid",
    "paid_at": "2026-11-01",
    "refunded_cents": 0,
}
CUSTOMERS = [*(c for c in SAMPLE["customers"] if c["id"] in USED), KENJI]
INVOICES = [*(i for i in SAMPLE["invoices"] if i["customer_id"] in USED), KENJI_INVOICE]
_names = itertools.count()


@pytest.fixture(scope="session")
def contract_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The contracts' sample data, in sample_data.json's format."""
    path = tmp_path_factory.mktemp("contract") / "sample_data.json"
    path.write_text(json.dumps({"customers": CUSTOMERS, "orders": [], "invoices": INVOICES, "tickets": []}))
    return path


class SampleDirectory:
    """The CRM side the real adapters read emails and records from (in memory)."""

    def __init__(self, customers: list[dict[str, Any]] = CUSTOMERS) -> None:
        self.customers = {c["id"]: Customer.model_validate(c) for c in customers}

    def get_customer(self, customer_id: str) -> Customer | None:
        return self.customers.get(customer_id)


# --- emulators -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto() -> Iterator[None]:
    """moto for one test module (fake credentials; nothing leaves the process)."""
    from moto import mock_aws
    from support_agent_local.emulator import fake_credentials

    fake_credentials()
    with mock_aws():
        aws.reset_clients()
        yield
    aws.reset_clients()


@cache
def _table_shape() -> dict[str, Any]:
    props = load_template()["Resources"]["EmbeddedDataTable"]["Properties"]
    return {"AttributeDefinitions": props["AttributeDefinitions"], "KeySchema": props["KeySchema"]}


@pytest.fixture
def embedded_table(moto: None, contract_data: Path) -> str:
    """A new, seeded embedded data table."""
    name = f"contract-{next(_names)}"
    boto3.client("dynamodb").create_table(TableName=name, BillingMode="PAY_PER_REQUEST", **_table_shape())
    embedded.seed(name, contract_data)
    return name


@pytest.fixture(scope="session")
def localstripe() -> Iterator[LocalStripe]:
    """localstripe on a free port of 127.0.0.1, for the whole session (each xdist worker has its own)."""
    with LocalStripe() as emulator:
        yield emulator


@pytest.fixture
def stripe_client(localstripe: LocalStripe) -> stripe.StripeClient:
    """A client on an emptied emulator."""
    localstripe.reset()
    return stripe.StripeClient(
        localstripe.api_key, base_addresses={"api": localstripe.url}, max_network_retries=0
    )


def stripe_billing(
    emulator: LocalStripe, api_key: str | None = None, directory: SampleDirectory | None = None
) -> StripeBilling:
    """The Stripe adapter on the emulator. localstripe rejects the refund `reason` parameter, so it is left
    out here; the recorded-response tests check that it is sent by default."""
    return StripeBilling(
        api_key or emulator.api_key,
        directory or SampleDirectory(),
        api_base=emulator.url,
        max_network_retries=0,
        refund_reason=None,
    )


# --- billing -------------------------------------------------------------------------------------------


@dataclass
class BillingBackend:
    name: str
    billing: Billing
    # An adapter whose credentials the backend refuses, and the secret it holds (None: no credentials).
    broken: Callable[[], tuple[Billing, str]] | None = None

    def invoice(self, customer_id: str, description: str) -> Invoice:
        """The customer's invoice with this description, as listed (ids differ by backend)."""
        return next(i for i in self.billing.list_invoices(customer_id) if i.description == description)


@pytest.fixture(params=["embedded", "stripe"])
def billing_backend(request: pytest.FixtureRequest, contract_data: Path) -> BillingBackend:
    if request.param == "embedded":
        return BillingBackend("embedded", EmbeddedBilling(request.getfixturevalue("embedded_table")))

    emulator: LocalStripe = request.getfixturevalue("localstripe")
    stripe_seed.seed(request.getfixturevalue("stripe_client"), contract_data)

    def broken() -> tuple[Billing, str]:
        secret = "rk_live_51SECRETdoNotLeak0123456789"  # not sk_…: localstripe answers 401, as Stripe would
        return stripe_billing(emulator, api_key=secret), secret

    return BillingBackend("stripe", stripe_billing(emulator), broken)


# --- accounts ------------------------------------------------------------------------------------------


@dataclass
class AccountsBackend:
    name: str
    accounts: Accounts
    mails: Callable[[str], int]  # password-reset mails sent to a customer so far
    extra: dict[str, Any] = field(default_factory=dict)


def make_pool(client: Any, customers: list[dict[str, Any]] = CUSTOMERS) -> str:
    """A user pool shaped like a deployment's, one confirmed user per customer (username = customer id)."""
    return cognito_pool(client, customers, name=f"support-agent-customers-{next(_names)}")


def add_user(
    client: Any,
    pool: str,
    username: str,
    customer: dict[str, Any],
    confirmed: bool = True,
    verified: bool = True,
) -> None:
    cognito_user(client, pool, username, customer, confirmed, verified)


class ResetCounter:
    """Counts AdminResetUserPassword calls per username (each is a mail Cognito would send)."""

    def __init__(self, client: Any) -> None:
        self.calls: list[str] = []
        client.meta.events.register("provide-client-params.cognito-idp.AdminResetUserPassword", self._count)

    def _count(self, params: dict[str, Any], **_: Any) -> None:
        self.calls.append(params["Username"])

    def __call__(self, username: str) -> int:
        return self.calls.count(username)


@pytest.fixture
def cognito(moto: None) -> Any:
    """A cognito-idp client on moto."""
    return boto3.client("cognito-idp", region_name="us-east-1")


@pytest.fixture(params=["embedded", "cognito"])
def accounts_backend(request: pytest.FixtureRequest) -> AccountsBackend:
    if request.param == "embedded":
        table = request.getfixturevalue("embedded_table")
        emails = {c["id"]: c["email"] for c in CUSTOMERS}

        def mails(customer_id: str) -> int:
            items = aws.dynamodb().scan(TableName=table)["Items"]
            return sum(
                1
                for i in items
                if i["pk"]["S"].startswith("OUTBOX#") and i.get("to", {}).get("S") == emails[customer_id]
            )

        return AccountsBackend("embedded", EmbeddedAccounts(table), mails)

    client = request.getfixturevalue("cognito")
    pool = make_pool(client)
    adapter = CognitoAccounts(pool, SampleDirectory(), client=client)
    return AccountsBackend("cognito", adapter, ResetCounter(client), {"client": client, "pool": pool})


@pytest.fixture(scope="module")
def shared_stack() -> Iterator[EmbeddedAws]:
    """One emulated stack per module (moto's state is process-wide: not wider than a module)."""
    with EmbeddedAws() as emulated:
        yield emulated
