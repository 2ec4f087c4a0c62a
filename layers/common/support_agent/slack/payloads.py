"""The Slack interactive payloads the endpoint acts on, validated at the boundary.

Slack posts a form body whose `payload` field is JSON. Only two shapes lead anywhere: `block_actions` (a
button on an approval or a handoff notice) and `view_submission` (one of our modals). Their fields are
validated here, so the endpoint reads attributes instead of indexing dicts, and a payload of the wrong
shape is refused with 400 naming the field (after the signature has been checked). Other payload types
(`view_closed`, `block_suggestion`, …) are acknowledged and ignored. Extra fields are ignored: Slack adds
fields over time.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from support_agent import boundary
from support_agent.models import SLACK_ID_CHARS, SLACK_NAME_CHARS

# Button values and private_metadata carry our request ids (well under 128 characters); the cap keeps a
# lookup key inside DynamoDB's 2,048-byte key limit whatever the characters.
REQUEST_ID_CHARS = 255


class PayloadRefused(ValueError):
    """The signed body is not a payload the endpoint can read; the message names the field."""


class _Slack(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)


class SlackUser(_Slack):
    id: str = Field(min_length=1, max_length=SLACK_ID_CHARS)
    username: str = Field(default="", max_length=SLACK_NAME_CHARS)


class SlackChannel(_Slack):
    id: str = Field(min_length=1, max_length=SLACK_ID_CHARS)


class ActionClick(_Slack):
    action_id: str = Field(min_length=1, max_length=255)
    value: str = Field(default="", max_length=REQUEST_ID_CHARS)


class BlockActions(_Slack):
    """A button pressed on one of our messages."""

    type: Literal["block_actions"]
    user: SlackUser
    trigger_id: str = Field(min_length=1, max_length=255)
    channel: SlackChannel | None = None
    actions: list[ActionClick] = Field(min_length=1, max_length=25)


class InputValue(_Slack):
    """One input element's state (`plain_text_input`: `value`, null when left empty)."""

    value: str | None = None


class ViewState(_Slack):
    # block_id → action_id → the element's state
    values: dict[str, dict[str, InputValue]] = Field(default_factory=dict)

    def first_values(self) -> dict[str, str]:
        """block_id → the text typed into that block's input ("" when empty)."""
        return {block: _first(elements) for block, elements in self.values.items()}


def _first(elements: dict[str, InputValue]) -> str:
    for element in elements.values():
        return element.value or ""
    return ""


class View(_Slack):
    callback_id: str = Field(default="", max_length=255)
    private_metadata: str = Field(default="", max_length=REQUEST_ID_CHARS)
    state: ViewState = Field(default_factory=ViewState)


class ViewSubmission(_Slack):
    """One of our modals submitted."""

    type: Literal["view_submission"]
    user: SlackUser
    view: View


Interaction = BlockActions | ViewSubmission
MODELS: dict[str, type[BlockActions] | type[ViewSubmission]] = {
    "block_actions": BlockActions,
    "view_submission": ViewSubmission,
}


def parse(body: bytes) -> Interaction | None:
    """The payload of a verified body, None for a type the endpoint ignores, or PayloadRefused."""
    try:
        text = boundary.utf8_text(body)
    except boundary.Refused as exc:
        raise PayloadRefused(exc.reason) from None
    try:
        fields = parse_qs(text, max_num_fields=16)
    except ValueError:
        raise PayloadRefused("body has too many form fields") from None
    values = fields.get("payload")
    if not values:
        raise PayloadRefused("body must be form-encoded with a JSON `payload` field")
    try:
        data = boundary.load_json(values[0])
    except ValueError as exc:
        raise PayloadRefused(f"payload: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise PayloadRefused("payload must be a JSON object with a string `type`")
    model = MODELS.get(data["type"])
    if model is None:
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p)[:64] for p in err["loc"])
        raise PayloadRefused(f"payload.{where}: {err['msg']}") from None
