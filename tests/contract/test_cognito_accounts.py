"""The Cognito adapter beyond the shared contract, on moto's cognito-idp."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.config import Config
from support_agent import clock
from support_agent.adapters.cognito_accounts import CognitoAccounts
from support_agent.adapters.ports import AdapterError

from tests.contract.conftest import CUSTOMERS, ResetCounter, SampleDirectory, add_user, make_pool

JANE = next(c for c in CUSTOMERS if c["id"] == "cus_jane")


@pytest.fixture
def pool(cognito: Any) -> str:
    return make_pool(cognito)


def accounts(cognito: Any, pool: str, **kwargs: Any) -> CognitoAccounts:
    return CognitoAccounts(pool, SampleDirectory(), client=cognito, **kwargs)


def attributes(cognito: Any, pool: str, username: str) -> dict[str, str]:
    user = cognito.admin_get_user(UserPoolId=pool, Username=username)
    return {a["Name"]: a["Value"] for a in user["UserAttributes"]}


def calls(cognito: Any, *operations: str) -> list[str]:
    seen: list[str] = []
    for op in operations:
        cognito.meta.events.register(
            f"provide-client-params.cognito-idp.{op}", lambda params, _op=op, **_: seen.append(_op)
        )
    return seen


# --- password reset -------------------------------------------------------------------------------------


def test_a_second_reset_soon_after_is_refused_then_allowed_after_the_window(
    cognito: Any, pool: str, monkeypatch: pytest.MonkeyPatch
):
    mails = ResetCounter(cognito)
    adapter = accounts(cognito, pool)
    adapter.send_password_reset("cus_jane", "k-1")

    with pytest.raises(AdapterError, match="minute"):
        adapter.send_password_reset("cus_jane", "k-2")
    assert mails("cus_jane") == 1

    now = clock.epoch()
    monkeypatch.setattr(clock, "epoch", lambda: now + 15 * 60 + 1)
    adapter.send_password_reset("cus_jane", "k-3")
    assert mails("cus_jane") == 2
    adapter.send_password_reset("cus_jane", "k-3")  # a redelivery of the last one sends nothing
    assert mails("cus_jane") == 2


def test_a_refused_reset_leaves_no_marker_behind(cognito: Any):
    pool = make_pool(cognito, [])
    add_user(cognito, pool, "cus_jane", JANE, verified=False)
    adapter = accounts(cognito, pool)

    with pytest.raises(AdapterError, match="no verified email or phone") as caught:
        adapter.send_password_reset("cus_jane", "k-unverified")
    assert "InvalidParameterException" in str(caught.value)
    assert "registered/verified" not in str(caught.value)  # our words, not Cognito's

    cognito.admin_update_user_attributes(
        UserPoolId=pool, Username="cus_jane", UserAttributes=[{"Name": "email_verified", "Value": "true"}]
    )
    mails = ResetCounter(cognito)
    adapter.send_password_reset("cus_jane", "k-verified")  # not held back by the failed attempt
    assert mails("cus_jane") == 1


@pytest.mark.parametrize(
    ("prepare", "expected"),
    [
        (lambda c, p: add_user(c, p, "cus_jane", JANE, confirmed=False), "invitation"),
        (
            lambda c, p: (
                add_user(c, p, "cus_jane", JANE),
                c.admin_disable_user(UserPoolId=p, Username="cus_jane"),
            ),
            "disabled",
        ),
    ],
)
def test_accounts_that_cannot_reset_are_refused_with_the_reason(cognito: Any, prepare: Any, expected: str):
    pool = make_pool(cognito, [])
    prepare(cognito, pool)
    mails = ResetCounter(cognito)

    with pytest.raises(AdapterError, match=expected):
        accounts(cognito, pool).send_password_reset("cus_jane", "k-state")
    assert mails("cus_jane") == 0


# --- profile --------------------------------------------------------------------------------------------


def test_profile_fields_map_to_pool_attributes(cognito: Any, pool: str):
    adapter = accounts(cognito, pool)

    adapter.update_profile("cus_jane", {"name": "Jane S."})
    updated = adapter.update_profile("cus_jane", {"notifications": {"sms": True}})

    stored = attributes(cognito, pool, "cus_jane")
    assert stored["name"] == "Jane S."
    assert json.loads(stored["custom:notifications"]) == {"email": True, "sms": True, "digest": True}
    assert updated.notifications == {
        "email": True,
        "sms": True,
        "digest": True,
    }  # merged with what was stored


def test_the_allow_list_is_the_callers(cognito: Any, pool: str):
    adapter = accounts(cognito, pool, allowed_fields={"name"})

    with pytest.raises(AdapterError, match="cannot be changed"):
        adapter.update_profile("cus_jane", {"notifications": {"sms": True}})
    assert adapter.update_profile("cus_jane", {"name": "Jane"}).name == "Jane"


@pytest.mark.parametrize(
    "fields",
    [{"name": ""}, {"name": "x" * 300}, {"notifications": {"sms": "yes"}}, {"notifications": ["sms"]}],
)
def test_bad_values_are_refused(cognito: Any, pool: str, fields: dict[str, Any]):
    with pytest.raises(AdapterError):
        accounts(cognito, pool).update_profile("cus_jane", fields)


# --- deletion -------------------------------------------------------------------------------------------


def test_deletion_disables_before_it_deletes(cognito: Any, pool: str):
    seen = calls(cognito, "AdminDisableUser", "AdminDeleteUser")

    accounts(cognito, pool).delete_account("cus_jane", "k-del")

    assert seen == ["AdminDisableUser", "AdminDeleteUser"]
    assert [u["Username"] for u in cognito.list_users(UserPoolId=pool)["Users"]] == ["cus_marco", "cus_kenji"]


def test_a_disabled_but_undeleted_account_is_finished_by_the_next_delivery(cognito: Any, pool: str):
    cognito.admin_disable_user(UserPoolId=pool, Username="cus_jane")  # as if the delete had failed

    accounts(cognito, pool).delete_account("cus_jane", "k-del")

    assert "cus_jane" not in [u["Username"] for u in cognito.list_users(UserPoolId=pool)["Users"]]


# --- which user ----------------------------------------------------------------------------------------


def test_lookup_by_email_for_pools_with_generated_usernames(cognito: Any):
    pool = make_pool(cognito, [])
    add_user(cognito, pool, "5f1c2b7e-0d9a-4c57-9b1e-7a1f3c2d4e5f", JANE)
    mails = ResetCounter(cognito)

    accounts(cognito, pool, lookup="email").send_password_reset("cus_jane", "k-email")

    assert mails("5f1c2b7e-0d9a-4c57-9b1e-7a1f3c2d4e5f") == 1
    with pytest.raises(AdapterError, match="no account"):
        accounts(cognito, pool).send_password_reset("cus_jane", "k-username")  # usernames are not our ids


def test_two_users_with_the_customers_email_are_ambiguous(cognito: Any):
    pool = make_pool(cognito, [])
    add_user(cognito, pool, "user-a", JANE)
    add_user(cognito, pool, "user-b", JANE)

    with pytest.raises(AdapterError, match="several accounts"):
        accounts(cognito, pool, lookup="email").send_password_reset("cus_jane", "k-email")


# --- failures -------------------------------------------------------------------------------------------


def test_a_missing_user_pool_is_an_adapter_error(cognito: Any):
    with pytest.raises(AdapterError, match=r"user pool does not exist \[ResourceNotFoundException\]"):
        accounts(cognito, "us-east-1_Missing00").send_password_reset("cus_jane", "k-pool")


def test_an_unreachable_cognito_is_an_adapter_error():
    client = boto3.client(
        "cognito-idp",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="testing",
        aws_secret_access_key="SECRETtesting",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )

    with pytest.raises(AdapterError, match="did not answer") as caught:
        CognitoAccounts("us-east-1_Pool", SampleDirectory(), client=client).delete_account("cus_jane", "k")
    assert "SECRET" not in str(caught.value) and "127.0.0.1" not in str(caught.value)
