"""Two-factor sign-in: who must have a second factor (the instance's ``mfa_required``), and
who has one. allauth.mfa keeps the authenticators and runs the sign-in step that asks for them;
``MfaRequiredMiddleware`` sends the people this requires it of to set one up."""

from __future__ import annotations

from collections.abc import Callable

from allauth.mfa.models import Authenticator

from .models import MfaRequirement, User
from .selectors import instance_settings_get

# What counts as a second factor. Recovery codes only stand in for one that is lost.
SECOND_FACTORS = (Authenticator.Type.TOTP, Authenticator.Type.WEBAUTHN)
# Where allauth keeps each kind's secret in ``Authenticator.data``, encrypted through
# ``MfaAdapter`` with the instance's keys (a passkey's row holds only its public key).
ENCRYPTED_SECRETS = {Authenticator.Type.TOTP: "secret", Authenticator.Type.RECOVERY_CODES: "seed"}


def mfa_requirement_covers(requirement: str, user: User) -> bool:
    """Whether ``requirement`` (a ``MfaRequirement``) asks ``user`` for a second factor."""
    if requirement == MfaRequirement.EVERYONE:
        return True
    return requirement == MfaRequirement.STAFF and user.is_staff


def mfa_required_for(user) -> bool:
    return user.is_authenticated and mfa_requirement_covers(instance_settings_get().mfa_required, user)


def _factors(user):
    return Authenticator.objects.filter(user_id=user.pk, type__in=SECOND_FACTORS)


def mfa_factors_of(user) -> int:
    """How many second factors ``user`` has set up (an authenticator app, passkeys)."""
    return _factors(user).count()


def mfa_missing(user) -> bool:
    """Signed in, required to have a second factor by the instance, and without one."""
    return mfa_required_for(user) and not _factors(user).exists()


def mfa_secrets_rotate(rotate: Callable[[str], str]) -> int:
    """Re-encrypts the app keys and recovery-code seeds (``localai rotate_secrets``)."""
    rotated = 0
    for authenticator in Authenticator.objects.select_for_update().filter(type__in=ENCRYPTED_SECRETS):
        name = ENCRYPTED_SECRETS[authenticator.type]
        authenticator.data[name] = rotate(authenticator.data[name])
        authenticator.save(update_fields=["data"])
        rotated += 1
    return rotated
