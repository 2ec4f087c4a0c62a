"""Accounts in an Amazon Cognito user pool (implements ports.Accounts), through boto3's cognito-idp admin API.

Which user is our customer (`lookup`, chosen per deployment):
- "username" (the default): the Cognito username is our customer id; one AdminGetUser, no scan.
- "email": for pools where people sign in with their email and Cognito made the username; the customer's
  email (from the CRM) is looked up with ListUsers `email = "…"`; exactly one match is used, several are
  refused as ambiguous. Never mixed with the first: a guess by email could land on someone else's account.

Password reset: AdminResetUserPassword, the documented admin flow: Cognito sends the user a code (to the
verified email or phone) and they set a new password with it. Cognito has no idempotency key, so the adapter
keeps `"<unix time> <hash of our key>"` in a custom attribute (`custom:support_reset`): a repeated call with
the same key is a no-op (redelivery), and another key within `reset_window` seconds (15 minutes) is refused
with a message saying a code was just sent, instead of sending a second mail. The marker is written before
the reset and put back if Cognito refuses, so a crash between the two sends nothing twice (at most once).
Users who never finished sign-up (FORCE_CHANGE_PASSWORD, UNCONFIRMED), who sign in through another identity
provider, or who are disabled are refused with a message saying why.

Profile: only the fields in `allowed_fields` (the policy's list) may change; each maps to an attribute:
`name` → the standard `name`; `notifications` (channel → bool) → `custom:notifications`, compact JSON,
merged into what is stored. The CRM is not written: the Customer returned is the CRM record with the values
the pool now holds.

Deletion: AdminDisableUser (sign-in stops and tokens are revoked at once), then AdminDeleteUser. A user that
is already gone counts as deleted, so a redelivered call succeeds; if the delete fails after the disable,
the account stays unusable and the next delivery finishes the job.

Every refusal or failure is an AdapterError whose message is written here (what failed and Cognito's error
code), never Cognito's own text. Timeouts and retries are botocore's (connect 3 s, read 10 s, standard mode).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from support_agent import clock
from support_agent.adapters.ports import AdapterError
from support_agent.models import Customer

if TYPE_CHECKING:
    from mypy_boto3_cognito_idp import CognitoIdentityProviderClient
    from mypy_boto3_cognito_idp.type_defs import AttributeTypeTypeDef

DEFAULT_ATTRIBUTES = {"name": "name", "notifications": "custom:notifications"}
RESET_MARKER = "custom:support_reset"
CLIENT_CONFIG = Config(connect_timeout=3, read_timeout=10, retries={"mode": "standard", "max_attempts": 3})
_REFUSED_STATUS = {
    "FORCE_CHANGE_PASSWORD": "has not finished sign-up (the invitation is pending): a person can resend it",
    "UNCONFIRMED": "has not confirmed their sign-up yet",
    "EXTERNAL_PROVIDER": "signs in through another identity provider, so there is no password here to reset",
    "ARCHIVED": "is archived",
    "COMPROMISED": "is flagged as compromised: a person must handle it",
}


class CustomerDirectory(Protocol):
    """Where the CRM record comes from (ports.Crm fits)."""

    def get_customer(self, customer_id: str) -> Customer | None: ...


@dataclass(frozen=True)
class _User:
    username: str
    attributes: dict[str, str]
    status: str
    enabled: bool


class CognitoAccounts:
    """ports.Accounts over one Cognito user pool."""

    def __init__(
        self,
        user_pool_id: str,
        directory: CustomerDirectory,
        *,
        allowed_fields: Iterable[str] = ("name", "notifications"),
        attributes: Mapping[str, str] | None = None,
        lookup: Literal["username", "email"] = "username",
        reset_marker: str = RESET_MARKER,
        reset_window: int = 900,
        client: CognitoIdentityProviderClient | None = None,
    ) -> None:
        self.user_pool_id = user_pool_id
        self._directory = directory
        self._allowed = frozenset(allowed_fields)
        self._attributes = dict(DEFAULT_ATTRIBUTES if attributes is None else attributes)
        self._lookup = lookup
        self._marker = reset_marker
        self._window = reset_window
        self._client = client or boto3.client("cognito-idp", config=CLIENT_CONFIG)

    # --- the port ------------------------------------------------------------------------------------

    def send_password_reset(self, customer_id: str, idempotency_key: str) -> None:
        user = self._user(customer_id)
        if user is None:
            raise AdapterError(f"no account for customer {customer_id}")
        previous = user.attributes.get(self._marker)
        sent_at, sent_for = _parse_marker(previous)
        key = _digest(idempotency_key)
        if sent_for == key:
            return  # this very request was carried out already (a redelivery)
        if not user.enabled:
            raise AdapterError(f"the account of customer {customer_id} is disabled")
        if user.status in _REFUSED_STATUS:
            raise AdapterError(f"the account of customer {customer_id} {_REFUSED_STATUS[user.status]}")
        now = clock.epoch()
        if sent_at is not None and 0 <= now - sent_at < self._window:
            minutes = max(1, (now - sent_at) // 60)
            raise AdapterError(
                f"a password reset code was sent to customer {customer_id} {minutes} minute(s) ago: ask them to "
                f"check their inbox and spam folder; another can be sent {self._window // 60} minutes after the last"
            )
        self._set(user.username, {self._marker: f"{now} {key}"}, "recording the reset")
        try:
            with _errors("sending the password reset"):
                self._client.admin_reset_user_password(UserPoolId=self.user_pool_id, Username=user.username)
        except AdapterError:
            with contextlib.suppress(
                AdapterError
            ):  # if this fails too, the marker only delays the next reset
                self._set(user.username, {self._marker: previous or "0 -"}, "undoing the reset record")
            raise

    def update_profile(self, customer_id: str, fields: dict[str, Any]) -> Customer:
        unknown = set(fields) - self._allowed
        if unknown:
            raise AdapterError(f"fields {sorted(unknown)} cannot be changed here")
        unmapped = set(fields) - set(self._attributes)
        if unmapped:
            raise AdapterError(f"fields {sorted(unmapped)} have no Cognito attribute configured")
        if not fields:
            raise AdapterError("nothing to change")
        customer = self._directory.get_customer(customer_id)
        user = self._user(customer_id)
        if customer is None or user is None:
            raise AdapterError(f"no account for customer {customer_id}")
        values: dict[str, Any] = {}
        attributes: dict[str, str] = {}
        for name, value in fields.items():
            attribute = self._attributes[name]
            values[name], attributes[attribute] = _encode(name, value, user.attributes.get(attribute))
        self._set(user.username, attributes, "updating the profile")
        known = {k: v for k, v in values.items() if k in Customer.model_fields}
        return customer.model_copy(update=known)

    def delete_account(self, customer_id: str, idempotency_key: str) -> None:
        """Disable, then delete; a user already gone is success (idempotent without a key)."""
        user = self._user(customer_id)
        if user is None:
            return
        for action, call in (
            ("disabling the account", self._client.admin_disable_user),
            ("deleting the account", self._client.admin_delete_user),
        ):
            try:
                with _errors(action, gone_ok=True):
                    call(UserPoolId=self.user_pool_id, Username=user.username)
            except _Gone:
                return

    # --- Cognito -------------------------------------------------------------------------------------

    def _user(self, customer_id: str) -> _User | None:
        if self._lookup == "username":
            try:
                with _errors("looking up the account", gone_ok=True):
                    got = self._client.admin_get_user(UserPoolId=self.user_pool_id, Username=customer_id)
            except _Gone:
                return None
            return _User(
                got["Username"],
                {a["Name"]: a.get("Value", "") for a in got.get("UserAttributes", [])},
                str(got.get("UserStatus", "")),
                bool(got.get("Enabled", True)),
            )
        customer = self._directory.get_customer(customer_id)
        if customer is None or not customer.email:
            return None
        email = customer.email.replace("\\", "\\\\").replace('"', '\\"')
        with _errors("looking up the account"):
            found = self._client.list_users(
                UserPoolId=self.user_pool_id, Filter=f'email = "{email}"', Limit=2
            ).get("Users", [])
        if len(found) > 1:
            raise AdapterError(
                f"several accounts share the email of customer {customer_id}: a person must pick"
            )
        if not found:
            return None
        u = found[0]
        return _User(
            u.get("Username", ""),
            {a["Name"]: a.get("Value", "") for a in u.get("Attributes", [])},
            str(u.get("UserStatus", "")),
            bool(u.get("Enabled", True)),
        )

    def _set(self, username: str, attributes: dict[str, str], doing: str) -> None:
        listed: list[AttributeTypeTypeDef] = [{"Name": k, "Value": v} for k, v in attributes.items()]
        with _errors(doing):
            self._client.admin_update_user_attributes(
                UserPoolId=self.user_pool_id, Username=username, UserAttributes=listed
            )


# --- values ----------------------------------------------------------------------------------------------


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def _parse_marker(value: str | None) -> tuple[int | None, str | None]:
    at, _, key = (value or "").partition(" ")
    return (int(at), key or None) if at.isdigit() and int(at) > 0 else (None, key or None)


def _encode(name: str, value: Any, stored: str | None) -> tuple[Any, str]:
    """(the value for our model, the attribute's text) for one profile field."""
    if name == "notifications":
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, bool) for k, v in value.items()
        ):
            raise AdapterError("notifications must map channel names to true or false")
        try:
            current = json.loads(stored) if stored else {}
        except ValueError:
            current = {}
        merged = {**(current if isinstance(current, dict) else {}), **value}
        text = json.dumps(merged, sort_keys=True, separators=(",", ":"))
        if len(text) > 2048:
            raise AdapterError("too many notification settings")
        return merged, text
    if not isinstance(value, str) or not value.strip() or len(value) > 256:
        raise AdapterError(f"{name} must be text of 1 to 256 characters")
    return value.strip(), value.strip()


# --- errors ----------------------------------------------------------------------------------------------


class _Gone(Exception):
    """The user does not exist (any more)."""


_CODE_MESSAGES = {
    "NotAuthorizedException": "Cognito does not allow this for the account in its current state",
    "InvalidParameterException": "Cognito rejected the request (no verified email or phone, or an attribute "
    "missing from the pool's schema)",
    "LimitExceededException": "Cognito's limit for this was reached: try again later",
    "TooManyRequestsException": "Cognito is rate-limiting us: try again later",
    "AccessDeniedException": "this function is not allowed to do that in Cognito (IAM)",
    "ResourceNotFoundException": "the configured user pool does not exist",
    "UserNotFoundException": "the account does not exist",
}


@contextmanager
def _errors(doing: str, gone_ok: bool = False) -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if gone_ok and code == "UserNotFoundException":
            raise _Gone from None
        detail = _CODE_MESSAGES.get(code, "Cognito refused")
        suffix = f" [{code}]" if code.isalnum() else ""
        raise AdapterError(f"{doing} failed: {detail}{suffix}") from exc
    except BotoCoreError as exc:
        raise AdapterError(f"{doing} failed: Cognito did not answer, try again later") from exc
