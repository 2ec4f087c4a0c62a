"""The Accounts port's contract: the same behaviour from the embedded adapter (moto DynamoDB) and from the
Cognito adapter (boto3 on moto's cognito-idp)."""

from __future__ import annotations

import pytest
from support_agent.adapters.ports import AdapterError

from tests.contract.conftest import AccountsBackend


def test_reset_for_an_unknown_customer_is_refused(accounts_backend: AccountsBackend):
    with pytest.raises(AdapterError, match="cus_nobody"):
        accounts_backend.accounts.send_password_reset("cus_nobody", "k-reset-unknown")


def test_redelivered_reset_sends_one_mail(accounts_backend: AccountsBackend):
    accounts_backend.accounts.send_password_reset("cus_jane", "k-reset")
    accounts_backend.accounts.send_password_reset("cus_jane", "k-reset")

    assert accounts_backend.mails("cus_jane") == 1
    assert accounts_backend.mails("cus_marco") == 0


def test_profile_update_changes_only_the_given_fields(accounts_backend: AccountsBackend):
    fields = {"name": "Jane Smith-Jones", "notifications": {"email": True, "sms": True, "digest": False}}

    updated = accounts_backend.accounts.update_profile("cus_jane", fields)
    again = accounts_backend.accounts.update_profile("cus_jane", fields)  # redelivered: same outcome

    assert again == updated
    assert updated.id == "cus_jane" and updated.name == "Jane Smith-Jones"
    assert updated.notifications == {"email": True, "sms": True, "digest": False}
    assert (updated.email, updated.plan, updated.lifetime_value_cents) == (
        "jane.smith@example.com",
        "Premium",
        420000,
    )


@pytest.mark.parametrize("field", ["email", "plan", "status"])
def test_profile_fields_outside_the_allow_list_are_refused(accounts_backend: AccountsBackend, field: str):
    with pytest.raises(AdapterError, match="cannot be changed"):
        accounts_backend.accounts.update_profile("cus_jane", {field: "x", "name": "Jane"})


def test_profile_update_of_an_unknown_customer_is_refused(accounts_backend: AccountsBackend):
    with pytest.raises(AdapterError, match="cus_nobody"):
        accounts_backend.accounts.update_profile("cus_nobody", {"name": "Nobody"})


def test_deletion_is_idempotent_and_ends_the_account(accounts_backend: AccountsBackend):
    accounts_backend.accounts.delete_account("cus_marco", "k-delete")
    accounts_backend.accounts.delete_account("cus_marco", "k-delete")  # redelivered: still success

    with pytest.raises(AdapterError, match="cus_marco"):
        accounts_backend.accounts.send_password_reset("cus_marco", "k-reset-after-delete")
    assert accounts_backend.mails("cus_marco") == 0
    accounts_backend.accounts.send_password_reset("cus_jane", "k-reset-other")  # others are untouched
    assert accounts_backend.mails("cus_jane") == 1
