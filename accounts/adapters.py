from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from django import forms
from django.http import HttpRequest

from .models import SignupMode, User
from .selectors import instance_settings_get, invitation_find_open
from .services import user_signup_complete

INVITE_SESSION_KEY = "localai_invite"


class AccountAdapter(DefaultAccountAdapter):
    """Applies the instance's signup policy; the first account becomes the admin."""

    def is_open_for_signup(self, request: HttpRequest) -> bool:
        if not User.objects.exists():
            return True  # a fresh instance always lets its first person in
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
        user = super().save_user(request, user, form, commit=commit)
        token = request.session.pop(INVITE_SESSION_KEY, None)
        invitation = invitation_find_open(token=token, email=user.email) if token else None
        return user_signup_complete(user=user, invitation=invitation)
