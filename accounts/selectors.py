from __future__ import annotations

from django.conf import settings

from .models import InstanceSettings, Invitation


def instance_settings_get() -> InstanceSettings:
    found = InstanceSettings.objects.filter(pk=1).first()
    if found is None:
        found, _ = InstanceSettings.objects.get_or_create(
            pk=1, defaults={"signup_mode": settings.SIGNUP_MODE_DEFAULT}
        )
    return found


def invitation_find_open(*, token: str, email: str | None = None) -> Invitation | None:
    invitation = Invitation.objects.filter(token=token, accepted_at__isnull=True).first()
    if invitation is None:
        return None
    if email is not None and invitation.email and invitation.email.lower() != email.lower():
        return None
    return invitation
