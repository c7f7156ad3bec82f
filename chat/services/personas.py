"""Personas: the one a conversation starts with, and a person's own, saved or deleted."""

from __future__ import annotations

from accounts.models import User
from chat.models import Persona
from chat.providers import model_resolve
from chat.selectors import persona_get_visible
from localai_site.core.refusals import Refusal


def persona_choose(*, user: User, persona_id: int | None) -> Persona | None:
    if persona_id is None:
        return None
    persona = persona_get_visible(user=user, persona_id=persona_id)
    if persona is None:
        raise Refusal("unknown_persona", "That persona does not exist or is not yours.")
    return persona


def persona_save(*, owner: User, persona: Persona) -> Persona:
    """A person's own persona; sharing with everyone is for admins, in the admin."""
    persona.owner = owner
    persona.is_shared = False
    if persona.default_model and model_resolve(persona.default_model) is None:
        raise Refusal("unknown_model", "That model is not available on this instance.")
    persona.save()
    return persona


def persona_delete(*, persona: Persona) -> None:
    """Conversations that used it, and people who chose it as their default, keep going without it."""
    persona.delete()
