"""Which model may answer whom: the model chosen for a reply, and the lines nothing crosses
(a local-only account, cloud turned off, a local conversation going to the cloud,
restricted processing). Each refusal is said for the person."""

from __future__ import annotations

from accounts.models import User
from accounts.selectors import instance_settings_get
from chat.models import Conversation, Provider
from chat.providers import ModelChoice, model_resolve
from localai_site.core.refusals import Refusal


def cloud_allowed(*, user: User) -> bool:
    return instance_settings_get().cloud_enabled and not user.local_only


def model_choose(*, user: User, model_id: str | None) -> ModelChoice:
    """The model ``model_id`` (or the default one) if ``user`` may use it now."""
    choice = model_resolve(model_id)
    if choice is None:
        if model_id:
            raise Refusal("unknown_model", f"The model {model_id!r} is not available on this instance.")
        raise Refusal("no_model", "No model is installed yet; an admin can add one in the model hub.")
    if not choice.is_local and not cloud_allowed(user=user):
        if user.local_only:
            raise Refusal("local_only", "Your account is set to local models only (Settings → Privacy).")
        raise Refusal("cloud_off", "Cloud providers are turned off on this instance.")
    if choice.local_model is not None and choice.local_model.unhealthy_reason:
        raise Refusal(
            "model_unhealthy",
            f"{choice.label} is switched off: {choice.local_model.unhealthy_reason} "
            "An admin can check it again on the Models page; pick another model meanwhile.",
        )
    return choice


def privacy_line_check(*, conversation: Conversation, choice: ModelChoice) -> None:
    """A conversation that used a local model never goes to a cloud provider."""
    if not choice.is_local and conversation.provider == Provider.LOCAL and conversation.messages.exists():
        raise Refusal(
            "stays_local",
            f"This conversation used a local model, so it stays on this instance. "
            f"Start a new chat to use {choice.provider_name}.",
        )


def restriction_check(*, user: User) -> None:
    """Nothing new is processed for a person who restricted processing of their data."""
    if user.processing_restricted:
        raise Refusal(
            "restricted",
            "Processing of your data is restricted: you can read and export it, "
            "but nothing new is processed.",
        )
