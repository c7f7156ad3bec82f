from __future__ import annotations

MANAGE_MODELS = "models_hub.manage_models"


def can_manage_models(user) -> bool:
    """Installing, configuring and deleting models is for admins; everyone else only picks."""
    return bool(user.is_authenticated and user.is_active and user.is_staff and user.has_perm(MANAGE_MODELS))
