from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from allauth.mfa.adapter import DefaultMFAAdapter
from allauth.mfa.models import Authenticator
from django import forms
from django.db import transaction
from django.http import HttpRequest

from localai_site.core.crypto import secret_decrypt, secret_encrypt

from .mfa import SECOND_FACTORS, mfa_factors_of, mfa_required_for
from .models import SignupMode, User
from .selectors import admin_exists, instance_settings_get, invitation_find_open
from .services import user_signup_complete
from .setup_token import setup_token_matches

INVITE_SESSION_KEY = "localai_invite"
SETUP_SESSION_KEY = "localai_setup"


class AccountAdapter(DefaultAccountAdapter):
    """Applies the instance's signup policy. allauth's social adapter asks this one too,
    so signing up with Google or Apple follows the same rules."""

    def is_open_for_signup(self, request: HttpRequest) -> bool:
        if not admin_exists():
            # Only the person holding the setup token printed at start can sign up: they
            # become the admin.
            token = request.GET.get("setup") or request.session.get(SETUP_SESSION_KEY)
            if token and setup_token_matches(token):
                request.session[SETUP_SESSION_KEY] = token
                return True
            request.first_admin_needed = True  # the closed page says how to become the admin
            return False
        request.session.pop(SETUP_SESSION_KEY, None)
        mode = instance_settings_get().signup_mode
        if mode == SignupMode.OPEN:
            return True
        if mode == SignupMode.INVITE:
            token = request.GET.get("invite") or request.session.get(INVITE_SESSION_KEY)
            if token and invitation_find_open(token=token):
                request.session[INVITE_SESSION_KEY] = token
                return True
        return False

    def clean_email(self, email: str) -> str:
        email = super().clean_email(email)
        token = self.request.session.get(INVITE_SESSION_KEY) if self.request else None
        if token and not invitation_find_open(token=token, email=email):
            raise forms.ValidationError("This invitation was sent to a different email address.")
        return email

    def save_user(self, request: HttpRequest, user: User, form, commit: bool = True) -> User:
        # One transaction: an account whose invitation or setup token was used by someone
        # else a moment before is not kept (the signup views show the refusal on the form).
        with transaction.atomic():
            user = super().save_user(request, user, form, commit=commit)
            user = user_signup_complete(
                user=user,
                invitation_token=request.session.get(INVITE_SESSION_KEY),
                setup_token=request.session.get(SETUP_SESSION_KEY),
            )
        request.session.pop(INVITE_SESSION_KEY, None)
        request.session.pop(SETUP_SESSION_KEY, None)
        return user


class MfaAdapter(DefaultMFAAdapter):
    """Keeps the app keys and recovery-code seeds encrypted like every stored secret, and a
    person the instance requires a second factor of from turning off their last one."""

    error_messages = {
        **DefaultMFAAdapter.error_messages,
        "cannot_delete_authenticator": "Two-factor sign-in is required for your account: add a passkey "
        "before you turn the authenticator app off.",
    }

    def encrypt(self, text: str) -> str:
        return secret_encrypt(text)

    def decrypt(self, encrypted_text: str) -> str:
        return secret_decrypt(encrypted_text)

    def can_delete_authenticator(self, authenticator: Authenticator) -> bool:
        user = authenticator.user
        if authenticator.type not in SECOND_FACTORS or not mfa_required_for(user):
            return True
        return mfa_factors_of(user) > 1
