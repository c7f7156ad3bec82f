"""Which model may answer whom: the model chosen for a reply, and the lines nothing crosses
(a local-only account, cloud turned off, a local conversation going to the cloud, images
for a model that cannot see them, restricted processing). Each refusal is said for the person."""

from __future__ import annotations

from accounts.models import User
from accounts.selectors import instance_settings_get
from chat.models import Conversation, Provider
from chat.providers import ModelChoice, model_resolve
from chat.providers.registry import models_offered
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


def _stays_local(conversation: Conversation) -> bool:
    return conversation.provider == Provider.LOCAL and conversation.messages.exists()


def privacy_line_check(*, conversation: Conversation, choice: ModelChoice) -> None:
    """A conversation that used a local model never goes to a cloud provider."""
    if not choice.is_local and _stays_local(conversation):
        raise Refusal(
            "stays_local",
            f"This conversation used a local model, so it stays on this instance. "
            f"Start a new chat to use {choice.provider_name}.",
        )


def images_check(*, user: User, conversation: Conversation, choice: ModelChoice) -> None:
    """Images go only to a model that can see them; the refusal names the ones that can and
    that this conversation may use (never a cloud one for a conversation kept local)."""
    if choice.sees_images:
        return
    stays_local = _stays_local(conversation)
    local, cloud = models_offered(include_cloud=cloud_allowed(user=user) and not stays_local)
    seeing = [f"{model.label} ({model.provider_name})" for model in [*local, *cloud] if model.sees_images]
    if stays_local:
        where = (
            f"Local models that can: {', '.join(seeing)}."
            if seeing
            else "No model on this instance can yet: an admin can install one that sees images "
            "from the model hub."
        )
        raise Refusal(
            "no_vision",
            f"{choice.label} cannot look at images, and this conversation stays on this instance. {where}",
        )
    where = f"Models that can: {', '.join(seeing)}." if seeing else "No model on this instance can."
    raise Refusal("no_vision", f"{choice.label} cannot look at images. {where}")


def restriction_check(*, user: User) -> None:
    """Nothing new is processed for a person who restricted processing of their data."""
    if user.processing_restricted:
        raise Refusal(
            "restricted",
            "Processing of your data is restricted: you can read and export it, "
            "but nothing new is processed.",
        )
