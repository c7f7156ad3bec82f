from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from .models import Invitation, User


@transaction.atomic
def user_signup_complete(*, user: User, invitation: Invitation | None) -> User:
    """Runs once per new account: the first account on an instance administers it."""
    is_first = not User.objects.exclude(pk=user.pk).exists()
    if is_first:
        user.is_staff = True
        user.is_superuser = True
        user.save(update_fields=["is_staff", "is_superuser"])
    if invitation is not None:
        invitation.accepted_by = user
        invitation.accepted_at = timezone.now()
        invitation.save(update_fields=["accepted_by", "accepted_at"])
    return user
